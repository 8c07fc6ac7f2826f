//! Which leaves of an order changed, as RFC 6901 JSON pointers with their
//! values before and after: what the change log tells tests. Pure.

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct LeafChange {
    pub(crate) path: String,
    /// `null` when the leaf did not exist before.
    pub(crate) from: Value,
    /// `null` when the leaf no longer exists.
    pub(crate) to: Value,
}

/// Every changed leaf between `before` and `after`, objects and arrays
/// descended into, in the order of `before`'s keys then `after`'s new keys.
pub(crate) fn leaf_changes(before: &Value, after: &Value) -> Vec<LeafChange> {
    let mut changes = Vec::new();
    walk(&mut String::new(), Some(before), Some(after), &mut changes);
    changes
}

fn walk(
    path: &mut String,
    before: Option<&Value>,
    after: Option<&Value>,
    out: &mut Vec<LeafChange>,
) {
    match (before, after) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            for (key, value) in a {
                descend(path, key, Some(value), b.get(key), out);
            }
            for (key, value) in b.iter().filter(|(key, _)| !a.contains_key(*key)) {
                descend(path, key, None, Some(value), out);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) => {
            for i in 0..a.len().max(b.len()) {
                descend(path, &i.to_string(), a.get(i), b.get(i), out);
            }
        }
        // A whole object appearing or vanishing is reported leaf by leaf, so
        // every pointer a watcher may follow shows up.
        (Some(Value::Object(a)), None) => {
            for (key, value) in a {
                descend(path, key, Some(value), None, out);
            }
        }
        (None, Some(Value::Object(b))) => {
            for (key, value) in b {
                descend(path, key, None, Some(value), out);
            }
        }
        (a, b) if a != b => out.push(LeafChange {
            path: path.clone(),
            from: a.cloned().unwrap_or(Value::Null),
            to: b.cloned().unwrap_or(Value::Null),
        }),
        _ => {}
    }
}

fn descend(
    path: &mut String,
    key: &str,
    a: Option<&Value>,
    b: Option<&Value>,
    out: &mut Vec<LeafChange>,
) {
    let len = path.len();
    path.push('/');
    // RFC 6901: `~` is written `~0` and `/` is written `~1`.
    path.push_str(&key.replace('~', "~0").replace('/', "~1"));
    walk(path, a, b, out);
    path.truncate(len);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_changed_leaves_only() {
        let before =
            json!({"id": "1", "status": "Current", "request": {"status": "In Progress", "x": 1}});
        let after =
            json!({"id": "1", "status": "Closed", "request": {"status": "Completed", "x": 1}});
        let changes = leaf_changes(&before, &after);
        assert_eq!(
            changes,
            vec![
                LeafChange {
                    path: "/status".into(),
                    from: json!("Current"),
                    to: json!("Closed")
                },
                LeafChange {
                    path: "/request/status".into(),
                    from: json!("In Progress"),
                    to: json!("Completed")
                },
            ]
        );
        assert!(leaf_changes(&before, &before).is_empty());
    }

    #[test]
    fn added_removed_and_escaped_keys() {
        let before = json!({"a/b": 1, "gone": {"deep": true}, "list": [1]});
        let after = json!({"a/b": 2, "new~": "x", "list": [1, 2]});
        let paths: Vec<String> = leaf_changes(&before, &after)
            .into_iter()
            .map(|c| c.path)
            .collect();
        assert_eq!(paths, vec!["/a~1b", "/gone/deep", "/list/1", "/new~0"]);
    }

    #[test]
    fn type_change_is_one_leaf() {
        let changes = leaf_changes(&json!({"a": {"b": 1}}), &json!({"a": "flat"}));
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].path, "/a");
    }
}
