//! `Secret`: a string that never shows itself in `Debug` or `Display`.
//!
//! Client secrets, API keys, tokens, webhook secrets, SMTP passwords and chat
//! webhook URLs are all held in this type, so a stray `{:?}` on a config or an
//! error can never print one. The only way to the text is [`Secret::expose`],
//! which is easy to grep for.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret text, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
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
    fn redacted_url_keeps_scheme_and_host_only() {
        let u =
            url::Url::parse("https://user:pw@hooks.slack.com:8443/services/T0/B0/XYZ?k=v").unwrap();
        assert_eq!(redact_url(&u), "https://hooks.slack.com:8443");
    }
}
