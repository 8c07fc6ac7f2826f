//! The top-level scalar fields of an order, kept beside its cached JSON so
//! that filtering and sorting 100,000 orders never re-parses a document, and
//! how such fields match a filter and compare in a sort.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Map, Number, Value};

/// A top-level value an order can be filtered or sorted on. Objects and
/// arrays are not kept: a filter never matches them and a sort treats them as
/// missing, which keeps an order's index small.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Null,
    Bool(bool),
    Number(Number),
    Str(Box<str>),
}

impl Scalar {
    fn from_value(value: &Value) -> Option<Scalar> {
        match value {
            Value::Null => Some(Scalar::Null),
            Value::Bool(b) => Some(Scalar::Bool(*b)),
            Value::Number(n) => Some(Scalar::Number(n.clone())),
            Value::String(s) => Some(Scalar::Str(s.as_str().into())),
            Value::Array(_) | Value::Object(_) => None,
        }
    }

    /// A filter value matches the field's JSON value rendered as text:
    /// strings as themselves, `true`/`false`, numbers as serde_json prints
    /// them, and `null`.
    pub(crate) fn matches_text(&self, text: &str) -> bool {
        match self {
            Scalar::Null => text == "null",
            Scalar::Bool(b) => text == if *b { "true" } else { "false" },
            Scalar::Number(n) => n.to_string() == text,
            Scalar::Str(s) => &**s == text,
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Scalar::Null => 1,
            Scalar::Bool(_) => 2,
            Scalar::Number(_) => 3,
            Scalar::Str(_) => 4,
        }
    }
}

/// Ascending order of two field values: missing first, then null, booleans,
/// numbers (numerically), strings (byte order, which is also date order for
/// RFC 3339 timestamps and numeric order for fixed-width numeric ids).
pub(crate) fn compare(a: Option<&Scalar>, b: Option<&Scalar>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => match (a, b) {
            (Scalar::Bool(x), Scalar::Bool(y)) => x.cmp(y),
            (Scalar::Number(x), Scalar::Number(y)) => compare_numbers(x, y),
            (Scalar::Str(x), Scalar::Str(y)) => x.cmp(y),
            _ => a.rank().cmp(&b.rank()),
        },
    }
}

fn compare_numbers(x: &Number, y: &Number) -> Ordering {
    // Integers compare exactly; only mixed or float pairs go through f64.
    if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
        return x.cmp(&y);
    }
    if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
        return x.cmp(&y);
    }
    let x = x.as_f64().unwrap_or(f64::NAN);
    let y = y.as_f64().unwrap_or(f64::NAN);
    x.total_cmp(&y)
}

/// Field names are shared between orders: 100,000 orders with the same dozen
/// keys hold a dozen strings, not 1.2 million.
#[derive(Debug, Default)]
pub(crate) struct KeyInterner {
    keys: HashSet<Arc<str>>,
}

impl KeyInterner {
    pub(crate) fn intern(&mut self, key: &str) -> Arc<str> {
        if let Some(existing) = self.keys.get(key) {
            return Arc::clone(existing);
        }
        let key: Arc<str> = Arc::from(key);
        self.keys.insert(Arc::clone(&key));
        key
    }
}

/// The scalar top-level fields of one order, in document order.
#[derive(Debug, Default, Clone)]
pub(crate) struct TopFields {
    fields: Vec<(Arc<str>, Scalar)>,
}

impl TopFields {
    pub(crate) fn from_object(object: &Map<String, Value>, keys: &mut KeyInterner) -> TopFields {
        let fields = object
            .iter()
            .filter_map(|(key, value)| Some((keys.intern(key), Scalar::from_value(value)?)))
            .collect();
        TopFields { fields }
    }

    /// The scalar fields at every depth, nested ones named by their path
    /// with `.` (`keyDates.expectedAt`), as Orange's `sort` and filters
    /// name them. Arrays are not entered.
    pub(crate) fn from_object_nested(
        object: &Map<String, Value>,
        keys: &mut KeyInterner,
    ) -> TopFields {
        let mut fields = Vec::new();
        flatten(object, "", keys, &mut fields);
        TopFields { fields }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Scalar> {
        self.fields
            .iter()
            .find(|(name, _)| &**name == key)
            .map(|(_, value)| value)
    }
}

fn flatten(
    object: &Map<String, Value>,
    prefix: &str,
    keys: &mut KeyInterner,
    out: &mut Vec<(Arc<str>, Scalar)>,
) {
    for (key, value) in object {
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Object(inner) => flatten(inner, &name, keys, out),
            other => {
                if let Some(scalar) = Scalar::from_value(other) {
                    out.push((keys.intern(&name), scalar));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(value: Value) -> TopFields {
        let mut keys = KeyInterner::default();
        match value {
            Value::Object(map) => TopFields::from_object(&map, &mut keys),
            _ => TopFields::default(),
        }
    }

    #[test]
    fn filters_match_the_rendered_text() {
        let f =
            fields(json!({"s": "Current", "b": true, "n": 42, "x": 1.5, "z": null, "o": {"a": 1}}));
        assert!(f.get("s").is_some_and(|v| v.matches_text("Current")));
        assert!(!f.get("s").is_some_and(|v| v.matches_text("current")));
        assert!(f.get("b").is_some_and(|v| v.matches_text("true")));
        assert!(f.get("n").is_some_and(|v| v.matches_text("42")));
        assert!(f.get("x").is_some_and(|v| v.matches_text("1.5")));
        assert!(f.get("z").is_some_and(|v| v.matches_text("null")));
        assert!(f.get("o").is_none(), "objects are not filterable");
    }

    #[test]
    fn comparison_orders_types_then_values() {
        let num = |n: i64| Scalar::Number(n.into());
        let s = |t: &str| Scalar::Str(t.into());
        assert_eq!(compare(Some(&num(9)), Some(&num(10))), Ordering::Less);
        assert_eq!(
            compare(
                Some(&Scalar::Number(Number::from_f64(2.5).unwrap_or(0.into()))),
                Some(&num(3))
            ),
            Ordering::Less
        );
        assert_eq!(
            compare(Some(&s("100009")), Some(&s("100010"))),
            Ordering::Less
        );
        assert_eq!(
            compare(
                Some(&s("2026-01-02T00:00:00Z")),
                Some(&s("2026-01-10T00:00:00Z"))
            ),
            Ordering::Less
        );
        assert_eq!(compare(None, Some(&Scalar::Null)), Ordering::Less);
        assert_eq!(
            compare(Some(&Scalar::Bool(true)), Some(&num(0))),
            Ordering::Less
        );
        assert_eq!(compare(Some(&num(0)), Some(&s(""))), Ordering::Less);
    }

    #[test]
    fn nested_fields_are_named_by_their_path() {
        let mut keys = KeyInterner::default();
        let value = json!({"id": "1", "keyDates": {"expectedAt": "2026-05-01"}, "a": {"b": {"c": 3}}, "l": [1]});
        let f = match &value {
            Value::Object(map) => TopFields::from_object_nested(map, &mut keys),
            _ => TopFields::default(),
        };
        assert!(
            f.get("keyDates.expectedAt")
                .is_some_and(|v| v.matches_text("2026-05-01"))
        );
        assert!(f.get("a.b.c").is_some_and(|v| v.matches_text("3")));
        assert!(f.get("keyDates").is_none() && f.get("l").is_none());
    }

    #[test]
    fn interner_shares_keys() {
        let mut keys = KeyInterner::default();
        let a = keys.intern("status");
        let b = keys.intern("status");
        assert!(Arc::ptr_eq(&a, &b));
    }
}
