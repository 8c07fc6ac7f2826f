//! The query string of a list call: `offset`, `limit`, `sort`, `fields`
//! (a partial answer), and every other parameter as a filter on a field.
//! Pure parsing.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::fields::{Scalar, TopFields, compare};

/// Items in a page when the caller gives no `limit`, as Orange's guides show
/// pages of 100 or fewer.
pub(crate) const DEFAULT_LIMIT: usize = 100;
/// A larger `limit` is served as this many, not refused (unless the
/// simulator was started with a larger `max_page_size`).
pub(crate) const MAX_LIMIT: usize = 1000;
/// Ordering's published page limit (and default) for its orders: a larger
/// `limit` is refused with a 400, as Orange does.
pub(crate) const ORDERS_LIMIT: usize = 250;

/// How a collection serves `limit`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PageLimits {
    pub(crate) default: usize,
    pub(crate) max: usize,
    /// Refuse a larger `limit` (Orange's published behaviour) rather than
    /// serve `max` items.
    pub(crate) refuse_above: bool,
}

/// Parameters that are neither paging nor filters, and that Orange accepts
/// without changing which items a page holds.
const NOT_FILTERS: &[&str] = &["includes"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SortKey {
    pub(crate) field: String,
    pub(crate) descending: bool,
}

/// Field → accepted values. Several values for one field match any of them
/// (`status=Current&status=Closed` is both).
pub(crate) type Filters = BTreeMap<String, Vec<String>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListQuery {
    pub(crate) filters: Filters,
    pub(crate) sort: Vec<SortKey>,
    pub(crate) offset: usize,
    pub(crate) limit: usize,
    /// `fields=id,status`: the fields each item keeps (dotted paths for
    /// nested ones); `None` for whole items.
    pub(crate) fields: Option<Vec<String>>,
}

/// A parameter whose value is not what it must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadParameter {
    pub(crate) name: String,
    pub(crate) value: String,
    /// Set when the value is a number above this largest one allowed.
    pub(crate) max: Option<usize>,
}

impl ListQuery {
    pub(crate) fn parse(raw: Option<&str>) -> Result<ListQuery, BadParameter> {
        Self::parse_capped(raw, MAX_LIMIT)
    }

    /// `parse`, serving at most `max_limit` items per page.
    pub(crate) fn parse_capped(
        raw: Option<&str>,
        max_limit: usize,
    ) -> Result<ListQuery, BadParameter> {
        Self::parse_with(
            raw,
            PageLimits {
                default: DEFAULT_LIMIT,
                max: max_limit,
                refuse_above: false,
            },
        )
    }

    /// `parse`, with the collection's own page limits.
    pub(crate) fn parse_with(
        raw: Option<&str>,
        limits: PageLimits,
    ) -> Result<ListQuery, BadParameter> {
        let mut query = ListQuery {
            filters: Filters::new(),
            sort: Vec::new(),
            offset: 0,
            limit: limits.default,
            fields: None,
        };
        let pairs = url::form_urlencoded::parse(raw.unwrap_or("").as_bytes());
        for (name, value) in pairs {
            let bad = || BadParameter {
                name: name.to_string(),
                value: value.to_string(),
                max: None,
            };
            match &*name {
                "offset" => query.offset = value.trim().parse().map_err(|_| bad())?,
                "limit" => {
                    let limit: usize = value.trim().parse().map_err(|_| bad())?;
                    if limits.refuse_above && limit > limits.max {
                        return Err(BadParameter {
                            max: Some(limits.max),
                            ..bad()
                        });
                    }
                    query.limit = limit.min(limits.max.max(1));
                }
                "sort" => query.sort = parse_sort(&value),
                "fields" => {
                    let fields: Vec<String> = value
                        .split(',')
                        .map(str::trim)
                        .filter(|f| !f.is_empty())
                        .map(str::to_owned)
                        .collect();
                    query.fields = (!fields.is_empty()).then_some(fields);
                }
                other if NOT_FILTERS.contains(&other) => {}
                _ => query
                    .filters
                    .entry(name.into_owned())
                    .or_default()
                    .push(value.into_owned()),
            }
        }
        for values in query.filters.values_mut() {
            values.sort();
            values.dedup();
        }
        Ok(query)
    }

    /// The same filters and sort give the same key, whatever the parameter
    /// order: the key of a cached view.
    pub(crate) fn view_key(&self) -> String {
        let mut key = String::new();
        for (field, values) in &self.filters {
            for value in values {
                // \u{1} and \u{2} cannot be confused with text a client sends
                // in a field name or value of a real order.
                key.push_str(field);
                key.push('\u{1}');
                key.push_str(value);
                key.push('\u{2}');
            }
        }
        key.push('\u{3}');
        for sort in &self.sort {
            key.push(if sort.descending { '-' } else { '+' });
            key.push_str(&sort.field);
            key.push(',');
        }
        key
    }
}

/// `-createdAt, id` → createdAt descending, then id ascending. An explicit `+`
/// arrives as a space after URL decoding and is trimmed; empty items are
/// skipped.
pub(crate) fn parse_sort(text: &str) -> Vec<SortKey> {
    text.split(',')
        .filter_map(|item| {
            let item = item.trim();
            let (descending, field) = match item.strip_prefix('-') {
                Some(rest) => (true, rest.trim()),
                None => (false, item.strip_prefix('+').unwrap_or(item).trim()),
            };
            (!field.is_empty()).then(|| SortKey {
                field: field.to_owned(),
                descending,
            })
        })
        .collect()
}

pub(crate) fn matches(filters: &Filters, fields: &TopFields) -> bool {
    filters.iter().all(|(field, accepted)| {
        fields
            .get(field)
            .is_some_and(|value| accepted.iter().any(|text| value.matches_text(text)))
    })
}

/// Order of two orders under `sort`, then by id ascending so that the order
/// is total and pages never overlap or skip.
pub(crate) fn compare_orders(
    sort: &[SortKey],
    (a_id, a): (&str, &TopFields),
    (b_id, b): (&str, &TopFields),
) -> Ordering {
    for key in sort {
        let ordering = compare(a.get(&key.field), b.get(&key.field));
        let ordering = if key.descending {
            ordering.reverse()
        } else {
            ordering
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    a_id.cmp(b_id)
}

/// The same comparison on values extracted once per order, used when a
/// whole view is sorted.
pub(crate) fn compare_extracted(
    sort: &[SortKey],
    (a_id, a): (&str, &[Option<&Scalar>]),
    (b_id, b): (&str, &[Option<&Scalar>]),
) -> Ordering {
    for ((key, x), y) in sort.iter().zip(a).zip(b) {
        let ordering = compare(*x, *y);
        let ordering = if key.descending {
            ordering.reverse()
        } else {
            ordering
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    a_id.cmp(b_id)
}

#[cfg(test)]
mod tests {
    use super::super::fields::KeyInterner;
    use super::*;
    use serde_json::json;

    fn top(value: serde_json::Value) -> TopFields {
        let mut keys = KeyInterner::default();
        value
            .as_object()
            .map(|m| TopFields::from_object(m, &mut keys))
            .unwrap_or_default()
    }

    #[test]
    fn parses_paging_sort_and_filters() {
        let q = ListQuery::parse(Some(
            "status=Current&offset=10&limit=20&sort=-id,+createdAt",
        ))
        .unwrap();
        assert_eq!(q.offset, 10);
        assert_eq!(q.limit, 20);
        assert_eq!(
            q.sort,
            vec![
                SortKey {
                    field: "id".into(),
                    descending: true
                },
                SortKey {
                    field: "createdAt".into(),
                    descending: false
                },
            ]
        );
        assert_eq!(q.filters.get("status"), Some(&vec!["Current".to_owned()]));
    }

    #[test]
    fn defaults_and_cap() {
        let q = ListQuery::parse(None).unwrap();
        assert_eq!((q.offset, q.limit), (0, DEFAULT_LIMIT));
        let q = ListQuery::parse(Some("limit=999999")).unwrap();
        assert_eq!(q.limit, MAX_LIMIT);
        let q = ListQuery::parse_capped(Some("limit=999999"), 200_000).unwrap();
        assert_eq!(q.limit, 200_000);
    }

    #[test]
    fn bad_numbers_are_refused() {
        for raw in ["offset=abc", "limit=-1", "offset=", "limit=1.5"] {
            assert!(ListQuery::parse(Some(raw)).is_err(), "{raw}");
        }
        let err = ListQuery::parse(Some("limit=x")).unwrap_err();
        assert_eq!(
            err,
            BadParameter {
                name: "limit".into(),
                value: "x".into(),
                max: None,
            }
        );
    }

    #[test]
    fn orders_refuse_pages_above_their_limit() {
        let limits = PageLimits {
            default: ORDERS_LIMIT,
            max: ORDERS_LIMIT,
            refuse_above: true,
        };
        let q = ListQuery::parse_with(None, limits).unwrap();
        assert_eq!(q.limit, 250);
        assert_eq!(
            ListQuery::parse_with(Some("limit=250"), limits)
                .unwrap()
                .limit,
            250
        );
        let err = ListQuery::parse_with(Some("limit=251"), limits).unwrap_err();
        assert_eq!(err.max, Some(250));
        let q = ListQuery::parse_with(Some("fields=id,keyDates.expectedAt&includes=notes"), limits)
            .unwrap();
        assert_eq!(
            q.fields,
            Some(vec!["id".to_owned(), "keyDates.expectedAt".to_owned()])
        );
        assert!(q.filters.is_empty());
    }

    #[test]
    fn view_key_ignores_parameter_order() {
        let a = ListQuery::parse(Some("a=1&b=2&sort=-id&offset=5")).unwrap();
        let b = ListQuery::parse(Some("b=2&a=1&sort=-id&limit=7")).unwrap();
        assert_eq!(a.view_key(), b.view_key());
        let c = ListQuery::parse(Some("a=1&b=2&sort=id")).unwrap();
        assert_ne!(a.view_key(), c.view_key());
    }

    #[test]
    fn filter_matching() {
        let order = top(json!({"id": "1", "status": "Current", "isArchived": false, "n": 3}));
        let f = |raw: &str| ListQuery::parse(Some(raw)).unwrap().filters;
        assert!(matches(&f("status=Current"), &order));
        assert!(!matches(&f("status=Closed"), &order));
        assert!(matches(&f("status=Closed&status=Current"), &order));
        assert!(matches(&f("isArchived=false&n=3"), &order));
        assert!(!matches(&f("missing=x"), &order));
        assert!(matches(&Filters::new(), &order));
    }

    #[test]
    fn sorting_breaks_ties_by_id() {
        let a = top(json!({"p": "HIGH", "d": "2026-02-01"}));
        let b = top(json!({"p": "HIGH", "d": "2026-01-01"}));
        let by = |raw: &str| parse_sort(raw);
        assert_eq!(
            compare_orders(&by("p"), ("1", &a), ("2", &b)),
            Ordering::Less
        );
        assert_eq!(
            compare_orders(&by("-p"), ("2", &a), ("1", &b)),
            Ordering::Greater
        );
        assert_eq!(
            compare_orders(&by("p,d"), ("1", &a), ("2", &b)),
            Ordering::Greater
        );
        assert_eq!(
            compare_orders(&by("p,-d"), ("1", &a), ("2", &b)),
            Ordering::Less
        );
        assert_eq!(
            compare_orders(&by(""), ("1", &a), ("2", &b)),
            Ordering::Less
        );
    }
}
