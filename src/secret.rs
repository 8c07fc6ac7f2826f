//! `Secret`: a string that never shows itself in `Debug` or `Display`, and
//! the redactor that keeps every secret value out of text from outside.
//!
//! Client secrets, API keys, tokens, webhook secrets, SMTP passwords and chat
//! webhook URLs are all held in this type, so a stray `{:?}` on a config or an
//! error can never print one. The only way to the text is [`Secret::expose`],
//! which is easy to grep for.
//!
//! The other side may echo a credential back: a token endpoint quoting the
//! `Authorization` header, an API error quoting the key, a chat service
//! answering with its own URL. So every `Secret` made is also remembered,
//! with the forms it travels in (base64, percent-encoded, a URL's path and
//! query), and [`redact`] replaces any of them, in any letter case, in text
//! that came from outside before it is logged, stored or shown.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use std::collections::VecDeque;
use std::fmt;
use std::sync::RwLock;

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[redacted]";
/// Shorter values are not searched for: they would blot out every message,
/// and no real credential is that short.
const MIN_REDACTED_LEN: usize = 4;
/// Path segments of a secret URL at least this long are credentials by
/// themselves (the token part of a chat webhook URL).
const MIN_URL_TOKEN_LEN: usize = 16;
/// Tokens issued at run time that are still looked for; older ones expired
/// long ago, and the list must not grow with every refresh.
const MAX_ISSUED: usize = 128;

/// Every form of every secret known, lower-cased (matching ignores case).
struct Known {
    configured: Vec<String>,
    issued: VecDeque<Vec<String>>,
}

static KNOWN: RwLock<Known> = RwLock::new(Known {
    configured: Vec::new(),
    issued: VecDeque::new(),
});

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A configured credential; remembered for [`redact`] for the life of
    /// the process.
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        let forms = forms(&value);
        if !forms.is_empty() {
            let mut known = KNOWN.write().unwrap_or_else(|e| e.into_inner());
            for form in forms {
                if !known.configured.contains(&form) {
                    known.configured.push(form);
                }
            }
        }
        Secret(value)
    }

    /// A database URL (`postgres://user:password@host/db`): the whole URL
    /// and its password (as written and percent-decoded) are remembered,
    /// not its path or host: the database's name and host are no secret,
    /// and the log says them.
    pub fn database_url(value: impl Into<String>) -> Self {
        let value = value.into();
        let mut needles = vec![value.to_ascii_lowercase()];
        if let Ok(url) = url::Url::parse(value.trim())
            && let Some(password) = url.password()
        {
            needles.extend(forms(password));
            let decoded: String = url::form_urlencoded::parse(format!("p={password}").as_bytes())
                .map(|(_, v)| v.into_owned())
                .next()
                .unwrap_or_default();
            needles.extend(forms(&decoded));
        }
        let mut known = KNOWN.write().unwrap_or_else(|e| e.into_inner());
        for form in needles.into_iter().filter(|f| f.len() >= MIN_REDACTED_LEN) {
            if !known.configured.contains(&form) {
                known.configured.push(form);
            }
        }
        Secret(value)
    }

    /// A credential handed out at run time (an access token): remembered
    /// among the last few issued only.
    pub fn issued(value: impl Into<String>) -> Self {
        let value = value.into();
        let forms = forms(&value);
        if !forms.is_empty() {
            let mut known = KNOWN.write().unwrap_or_else(|e| e.into_inner());
            if known.issued.len() >= MAX_ISSUED {
                known.issued.pop_front();
            }
            known.issued.push_back(forms);
        }
        Secret(value)
    }

    /// The secret text, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Remember the `Authorization: Basic` form of a user and password pair
/// (`base64(user:password)`), which no single secret's forms cover.
pub fn remember_basic(user: &str, password: &Secret) {
    let _ = Secret::new(format!("{user}:{}", password.expose()));
}

/// Remember the SMTP `AUTH PLAIN` form of a user and password pair
/// (`base64("\0" user "\0" password)`, RFC 4616 with no authorisation
/// identity, as sent), which no single secret's forms cover.
pub fn remember_sasl_plain(user: &str, password: &Secret) {
    let _ = Secret::new(format!("\0{user}\0{}", password.expose()));
}

/// `text` from outside with every known secret, in any of its forms and in
/// any letter case, replaced by `[redacted]`.
pub fn redact(text: &str) -> String {
    let known = KNOWN.read().unwrap_or_else(|e| e.into_inner());
    let lower = text.to_ascii_lowercase();
    // ASCII lower-casing keeps every byte where it was, so a match in
    // `lower` marks the same bytes of `text`.
    let mut hidden = vec![false; text.len()];
    let mut any = false;
    let needles = known.configured.iter().chain(known.issued.iter().flatten());
    for needle in needles {
        for (at, _) in lower.match_indices(needle.as_str()) {
            hidden[at..at + needle.len()].fill(true);
            any = true;
        }
    }
    if !any {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut run_start = None;
    for (i, c) in text.char_indices() {
        if hidden[i] {
            if run_start.is_none() {
                out.push_str(REDACTED);
                run_start = Some(i);
            }
        } else {
            run_start = None;
            out.push(c);
        }
    }
    out
}

/// The forms a secret value travels in, lower-cased: itself, base64
/// (standard and URL-safe; padding aside, each is a prefix of the padded
/// one), percent-encoded, and for a URL its path, its query and its long
/// path segments.
fn forms(value: &str) -> Vec<String> {
    let mut forms = vec![value.to_owned()];
    forms.push(STANDARD_NO_PAD.encode(value));
    forms.push(URL_SAFE_NO_PAD.encode(value));
    forms.push(url::form_urlencoded::byte_serialize(value.as_bytes()).collect());
    if let Some(key) = value.strip_prefix("whsec_") {
        forms.push(key.to_owned());
    }
    if let Ok(url) = url::Url::parse(value)
        && url.has_host()
    {
        if url.path().len() > 1 {
            forms.push(url.path().to_owned());
        }
        if let Some(query) = url.query() {
            forms.push(query.to_owned());
        }
        for segment in url.path_segments().into_iter().flatten() {
            if segment.len() >= MIN_URL_TOKEN_LEN {
                forms.push(segment.to_owned());
            }
        }
    }
    let mut forms: Vec<String> = forms
        .into_iter()
        .filter(|f| f.len() >= MIN_REDACTED_LEN)
        .map(|f| f.to_ascii_lowercase())
        .collect();
    forms.sort();
    forms.dedup();
    forms
}

/// Describe a URL for logs without its credential parts: scheme and host only.
///
/// Chat webhook URLs carry their token in the path, and any URL may carry
/// user info or a query key, so logs never show more than this.
pub fn redact_url(url: &url::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{}://{}:{}", url.scheme(), host, port),
        (Some(host), None) => format!("{}://{}", url.scheme(), host),
        _ => format!("{}://", url.scheme()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn a_database_url_hides_its_password_not_its_database() {
        let _ = Secret::database_url("postgres://ow:p%40ss-Wd-77@db.example.com/orderwatch_db");
        let said =
            redact("auth failed for ow with p@ss-Wd-77 (sent p%40ss-Wd-77) on orderwatch_db");
        assert!(!said.contains("p@ss-Wd-77"), "{said}");
        assert!(!said.contains("p%40ss-Wd-77"), "{said}");
        assert!(said.contains("orderwatch_db"), "{said}");
    }

    #[test]
    fn redacted_url_keeps_scheme_and_host_only() {
        let u =
            url::Url::parse("https://user:pw@hooks.slack.com:8443/services/T0/B0/XYZ?k=v").unwrap();
        assert_eq!(redact_url(&u), "https://hooks.slack.com:8443");
    }

    #[test]
    fn redact_finds_every_form_in_any_case() {
        let _ = Secret::new("Sekret-Api-Key-0815");
        let text = "bad key SEKRET-API-KEY-0815 and sekret-api-key-0815.";
        assert_eq!(redact(text), "bad key [redacted] and [redacted].");
        let b64 = base64::engine::general_purpose::STANDARD.encode("Sekret-Api-Key-0815");
        assert_eq!(
            redact(&format!("got {b64}")).trim_end_matches('='),
            "got [redacted]"
        );
        let url_safe = URL_SAFE_NO_PAD.encode("Sekret-Api-Key-0815");
        assert!(!redact(&url_safe).contains(&url_safe));
        assert_eq!(redact("nothing here"), "nothing here");
    }

    #[test]
    fn redact_knows_basic_headers_urls_and_issued_tokens() {
        let password = Secret::new("client-pw-4711");
        remember_basic("my-client", &password);
        let basic = base64::engine::general_purpose::STANDARD.encode("my-client:client-pw-4711");
        assert!(!redact(&format!("Authorization: Basic {basic}")).contains(&basic[..20]));

        let _ =
            Secret::new("https://hooks.example.com/services/T0/B0/AbCdEfGhIjKlMnOpQr?k=Zz9-query");
        let echoed = "CANNOT POST /SERVICES/T0/B0/ABCDEFGHIJKLMNOPQR?K=ZZ9-QUERY";
        assert_eq!(redact(echoed), "CANNOT POST [redacted]?[redacted]");
        assert_eq!(redact("token AbCdEfGhIjKlMnOpQr"), "token [redacted]");

        let smtp_password = Secret::new("smtp-pw-27182");
        remember_sasl_plain("mailer@example.com", &smtp_password);
        let plain =
            base64::engine::general_purpose::STANDARD.encode("\0mailer@example.com\0smtp-pw-27182");
        assert_eq!(
            redact(&format!("535 5.7.8 AUTH PLAIN {plain} refused")),
            "535 5.7.8 AUTH PLAIN [redacted] refused"
        );

        let _ = Secret::issued("issued-token-abcdef");
        assert_eq!(redact("Bearer issued-token-abcdef"), "Bearer [redacted]");
    }

    #[test]
    fn short_values_and_non_ascii_text_are_safe() {
        let _ = Secret::new("ab");
        assert_eq!(redact("a cab"), "a cab");
        let _ = Secret::new("ünïcode-secret");
        assert_eq!(redact("→ ÜNÏCODE-SECRET ←"), "→ ÜNÏCODE-SECRET ←");
        assert_eq!(redact("→ ünïcode-secret ←"), "→ [redacted] ←");
    }
}
