//! TLS to the server, as the URL's `sslmode` asks: `disable` never,
//! `prefer` (the default) when the server offers it, `require` always.
//! Whenever TLS is used the server's certificate and host name are
//! verified (stricter than libpq's `require`, which only encrypts):
//! against the CA file `sslrootcert=` names in the URL, or the platform's
//! roots without one (or with `sslrootcert=system`). rustls over aws-lc-rs,
//! the TLS stack of the other connections orderwatch makes.
//!
//! tokio-postgres refuses options it does not know, so `sslrootcert` is
//! taken out of the URL before the driver reads it.

use crate::store::StoreError;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::sync::Arc;

/// The URL's `sslrootcert` option (in a URL's query, or a `key=value`
/// string), and the URL without it.
pub(super) fn take_root_cert(url: &str) -> (String, Option<String>) {
    if let Ok(mut parsed) = url::Url::parse(url)
        && matches!(parsed.scheme(), "postgres" | "postgresql")
    {
        // The other options stay exactly as written: re-encoding them
        // (a `+` for a space) would change what the driver reads.
        let query = parsed.query().unwrap_or_default().to_owned();
        let mut root = None;
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| match pair.split_once('=') {
                Some(("sslrootcert", value)) => {
                    // Percent-decoded as libpq reads it: a `+` stays one.
                    root = Some(
                        url::form_urlencoded::parse(
                            format!("v={}", value.replace('+', "%2B")).as_bytes(),
                        )
                        .next()
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default(),
                    );
                    false
                }
                _ => true,
            })
            .collect();
        if root.is_none() {
            return (url.to_owned(), None);
        }
        let kept = kept.join("&");
        parsed.set_query((!kept.is_empty()).then_some(kept.as_str()));
        return (parsed.to_string(), root);
    }
    let mut root = None;
    let kept: Vec<&str> = url
        .split_whitespace()
        .filter(|part| match part.strip_prefix("sslrootcert=") {
            Some(path) => {
                root = Some(path.trim_matches('\'').to_owned());
                false
            }
            None => true,
        })
        .collect();
    match root {
        Some(root) => (kept.join(" "), Some(root)),
        None => (url.to_owned(), None),
    }
}

/// The connector the pool opens its connections with; `at` names the store
/// in errors. With `sslmode=disable` nothing is loaded.
pub(super) fn connector(
    mode: tokio_postgres::config::SslMode,
    root_cert: Option<&str>,
    at: &str,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_setup(at, &e.to_string()))?;
    let config = match root_cert {
        _ if mode == tokio_postgres::config::SslMode::Disable => builder
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
        None | Some("system") => {
            let verifier = rustls_platform_verifier::Verifier::new(provider)
                .map_err(|e| tls_setup(at, &format!("the platform's roots: {e}")))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth()
        }
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| tls_setup(at, &format!("cannot read sslrootcert {path}: {e}")))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(tls_setup(
                    at,
                    &format!("sslrootcert {path} holds no certificate"),
                ));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

fn tls_setup(at: &str, why: &str) -> StoreError {
    StoreError::Engine(format!(
        "the postgres store {at}: TLS cannot be set up: {why}"
    ))
}

/// What to do about a server certificate that was not trusted, added to
/// the driver's own words.
pub(super) fn hint(text: &str) -> &'static str {
    if text.contains("invalid peer certificate") {
        " (the server's TLS certificate was not verified: name the CA that \
         signed it with sslrootcert=/path/to/ca.pem in the store's url)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::take_root_cert;

    #[test]
    fn sslrootcert_leaves_the_url_and_the_rest_stays() {
        assert_eq!(
            take_root_cert("postgres://u:pw@db/o?sslmode=require&sslrootcert=%2Fetc%2Fca.pem"),
            (
                "postgres://u:pw@db/o?sslmode=require".to_owned(),
                Some("/etc/ca.pem".to_owned())
            )
        );
        assert_eq!(
            take_root_cert("postgresql://db/o?sslrootcert=system"),
            ("postgresql://db/o".to_owned(), Some("system".to_owned()))
        );
        assert_eq!(
            take_root_cert(
                "postgres://db/o?options=-c%20x%3Dy&sslrootcert=/ca.pem&sslmode=require"
            ),
            (
                "postgres://db/o?options=-c%20x%3Dy&sslmode=require".to_owned(),
                Some("/ca.pem".to_owned())
            )
        );
        assert_eq!(
            take_root_cert("postgres://db/o?sslrootcert=/etc/a+b%20c.pem"),
            (
                "postgres://db/o".to_owned(),
                Some("/etc/a+b c.pem".to_owned())
            )
        );
        assert_eq!(
            take_root_cert("postgres://db/o?sslmode=require"),
            ("postgres://db/o?sslmode=require".to_owned(), None)
        );
        assert_eq!(
            take_root_cert("host=db sslmode=require sslrootcert=/ca.pem user=o"),
            (
                "host=db sslmode=require user=o".to_owned(),
                Some("/ca.pem".to_owned())
            )
        );
    }
}
