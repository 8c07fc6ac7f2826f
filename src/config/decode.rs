//! Walks the YAML tree into typed config, collecting every problem.
//!
//! Each reader records a [`Problem`] with the key path and line and returns
//! `None`, so decoding carries on and the user sees all mistakes at once.
//! Messages never echo a value: the value may be a secret.

use super::env::{Environment, substitute};
use super::yaml::{Node, NodeValue};
use crate::deliver::template::{Role, check_template};
use crate::secret::Secret;
use std::time::Duration;

/// The shortest duration most timeouts accept.
pub(crate) const MILLI: Duration = Duration::from_millis(1);

/// Read an optional field with `read`, or use `default` when absent.
macro_rules! opt {
    ($d:expr, $f:expr, $key:literal, $default:expr, |$n:ident, $p:ident| $read:expr) => {
        match $f.get($key) {
            Some($n) => {
                let $p = $f.path($key);
                $read
            }
            None => Some($default),
        }
    };
}

pub(crate) use opt;

/// One thing wrong with the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path such as `sources[0].interval`; empty for the whole document.
    pub path: String,
    pub line: Option<u64>,
    pub message: String,
}

pub(crate) struct Decoder<'e> {
    env: &'e dyn Environment,
    pub problems: Vec<Problem>,
}

/// The entries of a mapping, with its path, for reading fields by name.
pub(crate) struct Fields<'n> {
    pub path: String,
    pub line: Option<u64>,
    entries: &'n [(String, Node)],
}

impl<'n> Fields<'n> {
    /// The value of `key`; an explicit null counts as absent.
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .filter(|v| !matches!(v.value, NodeValue::Null))
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn path(&self, key: &str) -> String {
        join(&self.path, key)
    }
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

impl<'e> Decoder<'e> {
    pub fn new(env: &'e dyn Environment) -> Self {
        Decoder {
            env,
            problems: Vec::new(),
        }
    }

    pub fn problem(
        &mut self,
        path: impl Into<String>,
        line: Option<u64>,
        message: impl Into<String>,
    ) {
        self.problems.push(Problem {
            path: path.into(),
            line,
            message: message.into(),
        });
    }

    fn wrong_type(&mut self, node: &Node, path: &str, expected: &str) {
        let got = node.value.kind();
        self.problem(path, node.line, format!("expected {expected}, found {got}"));
    }

    /// A mapping whose keys must all be in `allowed`; unknown keys are problems.
    pub fn map<'n>(&mut self, node: &'n Node, path: &str, allowed: &[&str]) -> Option<Fields<'n>> {
        let NodeValue::Map(entries) = &node.value else {
            self.wrong_type(node, path, "a mapping");
            return None;
        };
        for (key, value) in entries {
            if !allowed.contains(&key.as_str()) {
                let hint = suggestion(key, allowed);
                self.problem(
                    join(path, key),
                    value.line,
                    format!(
                        "unknown key `{key}`{hint}; known keys here: {}",
                        allowed.join(", ")
                    ),
                );
            }
        }
        Some(Fields {
            path: path.to_owned(),
            line: node.line,
            entries,
        })
    }

    /// A field that must be present.
    pub fn required<'n>(&mut self, fields: &Fields<'n>, key: &str) -> Option<&'n Node> {
        let node = fields.get(key);
        if node.is_none() {
            self.problem(
                fields.path(key),
                fields.line,
                format!("missing required key `{key}`"),
            );
        }
        node
    }

    pub fn list<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [Node]> {
        match &node.value {
            NodeValue::Seq(items) => Some(items),
            _ => {
                self.wrong_type(node, path, "a list");
                None
            }
        }
    }

    /// Text, with `${VAR}` substituted. Numbers and booleans are taken as text.
    pub fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        let Some(raw) = node.value.scalar_text() else {
            self.wrong_type(node, path, "a string");
            return None;
        };
        match substitute(&raw, self.env) {
            Ok(text) => Some(text),
            Err(message) => {
                self.problem(path, node.line, message);
                None
            }
        }
    }

    pub fn nonempty_string(&mut self, node: &Node, path: &str) -> Option<String> {
        let text = self.string(node, path)?;
        if text.trim().is_empty() {
            self.problem(path, node.line, "must not be empty");
            return None;
        }
        Some(text)
    }

    pub fn secret(&mut self, node: &Node, path: &str) -> Option<Secret> {
        self.nonempty_string(node, path).map(Secret::new)
    }

    pub fn uint(&mut self, node: &Node, path: &str, min: u64, max: u64) -> Option<u64> {
        let value = match &node.value {
            NodeValue::Int(i) => u64::try_from(*i).ok(),
            NodeValue::Str(_) => self.string(node, path)?.trim().parse::<u64>().ok(),
            _ => None,
        };
        match value {
            Some(v) if (min..=max).contains(&v) => Some(v),
            Some(_) => {
                self.problem(path, node.line, format!("must be between {min} and {max}"));
                None
            }
            None => {
                self.wrong_type(node, path, "a whole number");
                None
            }
        }
    }

    pub fn duration(&mut self, node: &Node, path: &str, min: Duration) -> Option<Duration> {
        let text = self.string(node, path)?;
        match humantime::parse_duration(text.trim()) {
            Ok(d) if d >= min => Some(d),
            Ok(_) => {
                self.problem(
                    path,
                    node.line,
                    format!("must be at least {}", humantime::format_duration(min)),
                );
                None
            }
            Err(_) => {
                self.problem(
                    path,
                    node.line,
                    "not a duration (examples: 30s, 5m, 1h 30m)",
                );
                None
            }
        }
    }

    /// One of a fixed set of words.
    pub fn choice<T: Copy>(&mut self, node: &Node, path: &str, options: &[(&str, T)]) -> Option<T> {
        let text = self.string(node, path)?;
        match options.iter().find(|(name, _)| *name == text) {
            Some((_, value)) => Some(*value),
            None => {
                let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
                // Only the allowed word is echoed, never the value.
                let hint = suggestion(text.trim(), &names);
                self.problem(
                    path,
                    node.line,
                    format!("must be one of: {}{hint}", names.join(", ")),
                );
                None
            }
        }
    }

    /// A list of strings; a single string is taken as a list of one.
    pub fn strings(&mut self, node: &Node, path: &str) -> Option<Vec<String>> {
        if let NodeValue::Str(_) = node.value {
            return self.string(node, path).map(|s| vec![s]);
        }
        let items = self.list(node, path)?;
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.string(item, &index(path, i)) {
                Some(s) => out.push(s),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A mapping of text to text, in file order.
    pub fn string_map(&mut self, node: &Node, path: &str) -> Option<Vec<(String, String)>> {
        let NodeValue::Map(entries) = &node.value else {
            self.wrong_type(node, path, "a mapping");
            return None;
        };
        let mut out = Vec::with_capacity(entries.len());
        let mut ok = true;
        for (key, value) in entries {
            match self.string(value, &join(path, key)) {
                Some(v) => out.push((key.clone(), v)),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// An http or https URL. `secret` keeps the value out of the message.
    pub fn url(&mut self, node: &Node, path: &str) -> Option<url::Url> {
        let text = self.nonempty_string(node, path)?;
        match url::Url::parse(text.trim()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Some(u),
            Ok(_) => {
                self.problem(
                    path,
                    node.line,
                    "must be an http:// or https:// URL with a host (for example https://hooks.example.com/orderwatch)",
                );
                None
            }
            // Said in the user's terms; the value itself is never echoed.
            Err(url::ParseError::RelativeUrlWithoutBase) => {
                self.problem(
                    path,
                    node.line,
                    "not a URL: it must start with http:// or https:// (for example https://hooks.example.com/orderwatch)",
                );
                None
            }
            Err(e) => {
                self.problem(path, node.line, format!("not a valid URL: {e}"));
                None
            }
        }
    }

    /// A message template, compiled and test-rendered here so that its
    /// problem is listed with all the others, on its line.
    pub fn template(&mut self, node: &Node, path: &str, kind: Role) -> Option<String> {
        let text = self.string(node, path)?;
        if let Err(message) = check_template(kind, &text) {
            self.problem(path, node.line, message);
            return None;
        }
        Some(text)
    }

    /// A JSON pointer (RFC 6901): empty, or starting with `/`.
    pub fn pointer(&mut self, node: &Node, path: &str) -> Option<String> {
        let text = self.string(node, path)?;
        if text.is_empty() || text.starts_with('/') {
            Some(text)
        } else {
            self.problem(
                path,
                node.line,
                "must be a JSON pointer starting with `/` (for example /status or /request/status)",
            );
            None
        }
    }

    /// The node as a JSON value, strings substituted (for `match` values).
    pub fn json(&mut self, node: &Node, path: &str) -> Option<serde_json::Value> {
        use serde_json::Value;
        Some(match &node.value {
            NodeValue::Null => Value::Null,
            NodeValue::Bool(b) => Value::Bool(*b),
            NodeValue::Int(i) => Value::from(*i),
            NodeValue::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
            }
            NodeValue::Str(_) => Value::String(self.string(node, path)?),
            NodeValue::Seq(_) | NodeValue::Map(_) => {
                self.wrong_type(node, path, "a plain value (text, number or boolean)");
                return None;
            }
        })
    }
}

/// The allowed word closest to a typo, if one is close enough to suggest.
fn closest<'a>(word: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|k| (strsim::damerau_levenshtein(word, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// " (did you mean `x`?)" when a word is close to one of `allowed`.
pub(crate) fn suggestion(word: &str, allowed: &[&str]) -> String {
    closest(word, allowed)
        .map(|k| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_get_a_suggestion() {
        assert_eq!(
            closest("intervall", &["interval", "timeout"]),
            Some("interval")
        );
        assert_eq!(closest("zzz", &["interval", "timeout"]), None);
        assert_eq!(closest("webhok", &["webhook", "slack"]), Some("webhook"));
        assert_eq!(
            closest("order-trakcing", &["order-tracking", "ordering"]),
            Some("order-tracking")
        );
    }
}
