//! The YAML document as a tree of nodes that remember their line.
//!
//! Decoding straight into typed structs stops at the first error; a user
//! fixing a config wants every problem at once, each with its key path and
//! line. So the file is first read into this small tree (serde-saphyr gives
//! each node its location), and `decode` walks it collecting problems.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use std::fmt;

#[derive(Clone)]
pub(crate) struct Node {
    pub line: Option<u64>,
    pub value: NodeValue,
}

#[derive(Clone)]
pub(crate) enum NodeValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl NodeValue {
    pub fn kind(&self) -> &'static str {
        match self {
            NodeValue::Null => "nothing",
            NodeValue::Bool(_) => "a boolean",
            NodeValue::Int(_) | NodeValue::Float(_) => "a number",
            NodeValue::Str(_) => "a string",
            NodeValue::Seq(_) => "a list",
            NodeValue::Map(_) => "a mapping",
        }
    }

    /// The scalar as text, for fields that accept numbers or strings alike.
    pub fn scalar_text(&self) -> Option<String> {
        match self {
            NodeValue::Bool(b) => Some(b.to_string()),
            NodeValue::Int(i) => Some(i.to_string()),
            NodeValue::Float(f) => Some(f.to_string()),
            NodeValue::Str(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<NodeValue>::deserialize(d)?;
        let line = spanned.referenced.line();
        Ok(Node {
            line: (line > 0).then_some(line),
            value: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for NodeValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = NodeValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<NodeValue, D::Error> {
        NodeValue::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<NodeValue, E> {
        Ok(NodeValue::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<NodeValue, E> {
        Ok(NodeValue::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<NodeValue, E> {
        Ok(i64::try_from(v).map_or(NodeValue::Float(v as f64), NodeValue::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<NodeValue, E> {
        Ok(NodeValue::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<NodeValue, E> {
        Ok(NodeValue::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<NodeValue, E> {
        Ok(NodeValue::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(NodeValue::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeValue, A::Error> {
        let mut entries: Vec<(String, Node)> = Vec::new();
        while let Some(key) = map.next_key::<KeyText>()? {
            let value = map.next_value::<Node>()?;
            if entries.iter().any(|(k, _)| *k == key.0) {
                return Err(de::Error::custom(format!("duplicate key `{}`", key.0)));
            }
            entries.push((key.0, value));
        }
        Ok(NodeValue::Map(entries))
    }
}

/// A mapping key: YAML allows any scalar, the config only ever means text.
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NodeValue::deserialize(d)?.scalar_text() {
            Some(text) => Ok(KeyText(text)),
            None => Err(de::Error::custom("a mapping key must be a plain value")),
        }
    }
}

/// Keys whose values are credentials, wherever they appear in the file.
const SECRET_KEYS: [&str; 7] = [
    "client_secret",
    "api_key",
    "secret",
    "password",
    "url",
    "token",
    "api_token",
];

/// Parse a YAML document into the tree; the error carries its line if known.
///
/// The parser's message quotes the lines around the error, and those may
/// hold a credential written in the file: only its first line (what is
/// wrong, where) is kept, with every secret value of the file redacted.
pub(crate) fn parse(text: &str) -> Result<Node, (String, Option<u64>)> {
    if text.trim().is_empty() {
        return Ok(Node {
            line: None,
            value: NodeValue::Map(Vec::new()),
        });
    }
    serde_saphyr::from_str::<Node>(text).map_err(|e| syntax_error(text, &e))
}

/// A parse error as a user reads it: the plain message, without the
/// parser's own snippet and position (the caller prints `file:line` once),
/// and the line of the mistake.
fn syntax_error(text: &str, error: &serde_saphyr::Error) -> (String, Option<u64>) {
    use serde_saphyr::MessageFormatter;
    let line = error.location().map(|l| l.line()).filter(|l| *l > 0);
    let message = serde_saphyr::UserMessageFormatter.format_message(error.without_snippet());
    // Remembered before any text of the file could be logged: a message
    // quoting a credential is redacted below.
    remember_secret_values(text);
    // The scanner trips over an indenting tab at the end of the token before
    // it, often a line early: name the line that has the tab.
    if message.contains("tab")
        && let Some(tab_line) = indenting_tab(text, line.unwrap_or(1))
    {
        return (
            "a tab in the indentation: YAML indents with spaces only".to_owned(),
            Some(tab_line),
        );
    }
    // Mapping keys from the file reach the message: keep it one plain line.
    let mut plain = String::with_capacity(message.len());
    for c in message.chars() {
        if c.is_control() {
            plain.extend(c.escape_debug());
        } else {
            plain.push(c);
        }
    }
    (crate::secret::redact(&plain), line)
}

/// The first line from `from` on (1-based) whose indentation has a tab.
fn indenting_tab(text: &str, from: u64) -> Option<u64> {
    text.lines()
        .zip(1u64..)
        .skip(usize::try_from(from.saturating_sub(1)).unwrap_or(usize::MAX))
        .find(|(l, _)| {
            l.chars()
                .take_while(|c| c.is_whitespace())
                .any(|c| c == '\t')
        })
        .map(|(_, n)| n)
}

/// The values of credential keys in a file that does not parse, line by
/// line, so that an error message quoting one can be redacted.
fn remember_secret_values(text: &str) {
    for line in text.lines() {
        let entry = line.trim_start().trim_start_matches("- ").trim_start();
        let entry = entry.trim_start_matches('{').trim_start();
        let Some((key, value)) = entry.split_once(':') else {
            continue;
        };
        if !SECRET_KEYS.contains(&key.trim().trim_matches(|c| c == '"' || c == '\'')) {
            continue;
        }
        let value = value.trim().trim_end_matches([',', '}']).trim();
        let value = value.trim_matches(|c| c == '"' || c == '\'');
        if !value.is_empty() && !value.starts_with("${") {
            let _ = crate::secret::Secret::new(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_know_their_lines() {
        let node = parse("a: 1\nb:\n  - x\n  - y: true\n").unwrap();
        let NodeValue::Map(entries) = node.value else {
            panic!("not a map")
        };
        assert_eq!(entries[0].0, "a");
        assert_eq!(entries[0].1.line, Some(1));
        let NodeValue::Seq(items) = &entries[1].1.value else {
            panic!("not a seq")
        };
        assert_eq!(items[1].line, Some(4));
    }

    #[test]
    fn syntax_errors_carry_a_line() {
        let (_, line) = parse("a: [1, 2\nb: 3\n").err().unwrap();
        assert!(line.is_some());
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let (message, line) = parse("a: 1\na: 2\n").err().unwrap();
        assert_eq!(line, Some(2));
        assert!(message.contains("duplicate"), "{message}");
        assert!(!message.contains("DuplicateKeyPolicy"), "{message}");
    }

    #[test]
    fn an_indenting_tab_is_named_on_its_own_line() {
        let (message, line) = parse("a:\n  b: 1\n\tc: 2\n").err().unwrap();
        assert_eq!(line, Some(3));
        assert!(message.contains("tab"), "{message}");
    }

    #[test]
    fn syntax_errors_quote_no_line_of_the_file() {
        let text = "sources:\n  - client_secret: Yaml-Secret-Value-123\n   api_key: [x\n";
        let (message, line) = parse(text).err().unwrap();
        assert_eq!(line, Some(3));
        assert!(!message.contains("Yaml-Secret-Value-123"), "{message}");
        assert!(!message.contains('\n'), "{message}");
        assert!(message.contains("did not find expected"), "{message}");
    }
}
