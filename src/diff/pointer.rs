//! JSON pointers (RFC 6901) read straight from JSON text: the value at a
//! pointer, as the text it is, without building a `Value` of the whole order.
//!
//! A quiet cycle only needs each order's id (and its hash) to know that
//! nothing changed; parsing 100,000 orders into `Value`s just to read `/id`
//! was most of its cost. Everything else in the document is skipped by the
//! tokenizer without allocating.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// The text of the value at `pointer` in `json`, if there is one. `json`
/// must be valid JSON (a `RawValue` is). Like `Value::pointer`: an empty
/// pointer is the whole document, a key present twice reads its last value.
pub(crate) fn find<'a>(json: &'a RawValue, pointer: &str) -> Option<&'a RawValue> {
    if pointer.is_empty() {
        return Some(json);
    }
    let rest = pointer.strip_prefix('/')?;
    let mut current = json;
    for token in rest.split('/') {
        let token = unescape(token);
        let mut de = serde_json::Deserializer::from_str(current.get());
        current = Step { token: &token }.deserialize(&mut de).ok()??;
    }
    Some(current)
}

fn unescape(token: &str) -> Cow<'_, str> {
    if token.contains('~') {
        Cow::Owned(token.replace("~1", "/").replace("~0", "~"))
    } else {
        Cow::Borrowed(token)
    }
}

/// One pointer step: the member or element named `token` of an object or
/// array, as raw text.
struct Step<'t> {
    token: &'t str,
}

impl<'de> DeserializeSeed<'de> for Step<'_> {
    type Value = Option<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Step<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            if key.0 == self.token {
                found = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // RFC 6901 array indexes: digits, no leading zero (as `Value::pointer`).
        let index = if self.token.starts_with('+')
            || (self.token.len() > 1 && self.token.starts_with('0'))
        {
            None
        } else {
            self.token.parse::<usize>().ok()
        };
        let mut found = None;
        let mut i = 0usize;
        loop {
            if Some(i) == index {
                match seq.next_element::<&'de RawValue>()? {
                    Some(v) => found = Some(v),
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            i += 1;
        }
        Ok(found)
    }

    // Scalars have no members.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// An object key, borrowed from the text unless it has escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn check(json: &str, pointer: &str) {
        let raw = RawValue::from_string(json.to_owned()).unwrap();
        let value: Value = serde_json::from_str(json).unwrap();
        let expected = value.pointer(pointer);
        let found = find(&raw, pointer).map(|r| serde_json::from_str::<Value>(r.get()).unwrap());
        assert_eq!(found.as_ref(), expected, "{json} at {pointer:?}");
    }

    #[test]
    fn reads_what_value_pointer_reads() {
        let doc = r#"{"id":"7","n":12,"a/b":1,"m~n":2,"esc\"aped":3,"x":{"y":[10,{"z":null},"s"]},"dup":1,"dup":2,"e":{},"l":[]}"#;
        for p in [
            "",
            "/id",
            "/n",
            "/a~1b",
            "/m~0n",
            "/esc\"aped",
            "/x",
            "/x/y",
            "/x/y/0",
            "/x/y/1/z",
            "/x/y/2",
            "/x/y/3",
            "/x/y/01",
            "/x/y/-",
            "/x/y/+1",
            "/dup",
            "/e",
            "/e/k",
            "/l/0",
            "/missing",
            "/id/0",
            "/n/x",
            "id",
        ] {
            check(doc, p);
        }
        check("[1,[2,3]]", "/1/0");
        check("\"s\"", "/a");
        check("{\"k\\u0041\":5}", "/kA");
    }
}
