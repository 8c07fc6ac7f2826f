//! The orders by the time of their last change (the `changed` tree), newest
//! first: what "sorted by last change" reads, across pages, without reading
//! every snapshot. Each entry's value says whether the order is still in
//! its listing, which is what the vanish step reads. The index is written
//! with the snapshots (`write_snapshots` in `mod.rs`) and built by the
//! upgrade to schema 5 (`migrate.rs`).

use super::{SledStore, Snapshot, StoreError, keys, snapshot};
use std::ops::Bound;

/// The value of an order still in its listing.
pub(crate) const LISTED: &[u8] = &[1];
/// The value of an order that left its listing.
pub(crate) const UNLISTED: &[u8] = &[];

pub(crate) fn flag(listed: bool) -> &'static [u8] {
    if listed { LISTED } else { UNLISTED }
}

/// Where an encoded snapshot sits in the index (its change time) and its
/// listed flag; `None` for bytes that are not a snapshot.
pub(crate) fn place_of(snapshot: &[u8]) -> Option<(u64, bool)> {
    let ms = Snapshot::peek_changed_ms(snapshot)?;
    let (_, listed) = Snapshot::peek_hash(snapshot)?;
    Some((ms, listed))
}

/// Where an order sits in the index: a page of a listing by change time
/// ends at one, and the next starts strictly below it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChangePosition {
    pub changed_ms: u64,
    pub source: String,
    pub order_id: String,
}

/// One order of a listing by change time.
#[derive(Debug, Clone)]
pub struct ChangedOrder {
    pub at: ChangePosition,
    pub snapshot: Snapshot,
}

impl SledStore {
    /// Every order, latest change first (ties: source, then id, both
    /// descending), starting strictly below `below` when given.
    pub fn orders_by_change(
        &self,
        below: Option<&ChangePosition>,
    ) -> impl Iterator<Item = Result<ChangedOrder, StoreError>> + use<> {
        let end = match below {
            Some(at) => Bound::Excluded(keys::changed(
                at.changed_ms,
                &keys::snapshot(&at.source, &at.order_id),
            )),
            None => Bound::Unbounded,
        };
        let snapshots = self.snapshots.clone();
        self.changed
            .range::<Vec<u8>, _>((Bound::Unbounded, end))
            .rev()
            .filter_map(move |item| {
                let key = match item {
                    Ok((key, _)) => key,
                    Err(e) => return Some(Err(e.into())),
                };
                let (changed_ms, source, order_id) = keys::changed_parts(&key)?;
                let bytes = match snapshots.get(keys::snapshot(source, order_id)) {
                    Ok(bytes) => bytes?,
                    Err(e) => return Some(Err(e.into())),
                };
                // An entry the snapshot has moved away from (none should
                // be left: both are written together) is passed over.
                let snap = Snapshot::decode(&bytes)
                    .filter(|s| snapshot::changed_ms(&s.changed_at) == changed_ms)?;
                Some(Ok(ChangedOrder {
                    at: ChangePosition {
                        changed_ms,
                        source: source.to_owned(),
                        order_id: order_id.to_owned(),
                    },
                    snapshot: snap,
                }))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Commit, LOCK_GRACE, META_SCHEMA, migrate};

    fn at(id: &str, changed_at: &str) -> (String, Option<Snapshot>) {
        let order = format!("{{\"id\":\"{id}\"}}");
        let snap = Snapshot {
            revision: 1,
            hash: Snapshot::hash_of(&order),
            listed: true,
            status: Some("Current".into()),
            changed_at: changed_at.into(),
            order,
        };
        (id.to_owned(), Some(snap))
    }

    fn write(store: &SledStore, snapshots: Vec<(String, Option<Snapshot>)>) {
        let commit = Commit {
            source: "t".into(),
            snapshots,
            ..Default::default()
        };
        store.commit(&commit).unwrap();
    }

    fn ids(store: &SledStore, below: Option<&ChangePosition>) -> Vec<String> {
        store
            .orders_by_change(below)
            .map(|o| o.unwrap().at.order_id)
            .collect()
    }

    /// A store of schema 3 (today's without the `changed` tree) holding
    /// `n` orders, order `i` changed at second `i`.
    fn schema_3_store(dir: &std::path::Path, n: u64) {
        let store = SledStore::open(dir, LOCK_GRACE).unwrap();
        let orders: Vec<(String, Option<Snapshot>)> = (0..n)
            .map(|i| {
                let time = humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000 + i),
                )
                .to_string();
                at(&format!("{i:05}"), &time)
            })
            .collect();
        for chunk in orders.chunks(500) {
            write(&store, chunk.to_vec());
        }
        store.changed.clear().unwrap();
        store.meta.insert(META_SCHEMA, &3u64.to_be_bytes()).unwrap();
        store.flush().unwrap();
    }

    fn assert_indexed(store: &SledStore, n: u64) {
        assert_schema_today(store);
        let expected: Vec<String> = (0..n).rev().map(|i| format!("{i:05}")).collect();
        assert_eq!(ids(store, None), expected);
        assert_eq!(store.changed.len() as u64, n);
    }

    #[test]
    fn the_index_says_which_orders_are_still_listed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), LOCK_GRACE).unwrap();
        write(
            &store,
            vec![
                at("1", "2026-11-22T08:00:00Z"),
                at("2", "2026-11-22T08:00:01Z"),
            ],
        );
        assert_eq!(store.listed_ids("t").unwrap(), ["1", "2"]);
        // Order 1 leaves the listing, its change time kept: the flag moves
        // alone, the order keeps its place.
        let (id, mut gone) = at("1", "2026-11-22T08:00:00Z");
        if let Some(s) = gone.as_mut() {
            s.listed = false;
        }
        write(&store, vec![(id, gone)]);
        assert_eq!(store.listed_ids("t").unwrap(), ["2"]);
        assert_eq!(ids(&store, None), ["2", "1"]);
        assert_eq!(store.changed.len(), 2);
        // And comes back with a change: a new place, listed again.
        write(&store, vec![at("1", "2026-11-22T08:00:02Z")]);
        assert_eq!(store.listed_ids("t").unwrap(), ["1", "2"]);
        assert_eq!(ids(&store, None), ["1", "2"]);
        assert_eq!(store.changed.len(), 2);
        // Another source's orders are not this one's.
        let other = Commit {
            source: "u".into(),
            snapshots: vec![at("3", "2026-11-22T08:00:03Z")],
            ..Default::default()
        };
        store.commit(&other).unwrap();
        assert_eq!(store.listed_ids("t").unwrap(), ["1", "2"]);
        assert_eq!(store.listed_ids("u").unwrap(), ["3"]);
        // One index key per order, and no tree of listed orders beside it.
        assert_eq!(store.changed.len(), 3);
        assert!(!store.db.tree_names().iter().any(|n| &n[..] == b"listed"));
    }

    #[test]
    fn a_schema_4_store_gets_the_listed_flags_from_its_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path(), LOCK_GRACE).unwrap();
            let (id, mut gone) = at("2", "2026-11-21T08:00:00Z");
            if let Some(s) = gone.as_mut() {
                s.listed = false;
            }
            write(&store, vec![at("1", "2026-11-22T08:00:00Z"), (id, gone)]);
            // What schema 4 wrote: index entries without a flag, and the
            // listed orders in a tree of their own.
            let entries: Vec<sled::IVec> =
                store.changed.iter().keys().map(Result::unwrap).collect();
            for key in entries {
                store.changed.insert(key, &[] as &[u8]).unwrap();
            }
            let listed = store.db.open_tree("listed").unwrap();
            listed
                .insert(keys::snapshot("t", "1"), &[] as &[u8])
                .unwrap();
            store.meta.insert(META_SCHEMA, &4u64.to_be_bytes()).unwrap();
            store.flush().unwrap();
        }
        let store = SledStore::open(dir.path(), LOCK_GRACE).unwrap();
        assert_schema_today(&store);
        assert_eq!(store.listed_ids("t").unwrap(), ["1"]);
        assert_eq!(ids(&store, None), ["1", "2"]);
        assert!(!store.db.tree_names().iter().any(|n| &n[..] == b"listed"));
    }

    fn assert_schema_today(store: &SledStore) {
        let version = store.meta.get(META_SCHEMA).unwrap().unwrap();
        assert_eq!(
            super::super::read_u64(&version),
            Some(super::super::SCHEMA_VERSION)
        );
    }

    #[test]
    fn a_schema_3_store_with_orders_gets_the_index_on_open() {
        let dir = tempfile::tempdir().unwrap();
        schema_3_store(dir.path(), 2_500);
        let store = SledStore::open(dir.path(), LOCK_GRACE).unwrap();
        assert_indexed(&store, 2_500);
        drop(store);
        let store = SledStore::open(dir.path(), LOCK_GRACE).unwrap();
        assert_indexed(&store, 2_500);
    }

    #[test]
    fn an_upgrade_from_3_stopped_part_way_opens_and_upgrades_again() {
        let mut stopped = 0;
        for steps in 0.. {
            let dir = tempfile::tempdir().unwrap();
            schema_3_store(dir.path(), 2_500);
            migrate::STEPS_BEFORE_CRASH.with(|c| c.set(Some(steps)));
            let first = SledStore::open(dir.path(), LOCK_GRACE);
            migrate::STEPS_BEFORE_CRASH.with(|c| c.set(None));
            match first {
                Ok(store) => {
                    assert_indexed(&store, 2_500);
                    break;
                }
                Err(e) => {
                    assert!(e.to_string().contains("stopped mid-migration"), "{e}");
                    stopped += 1;
                }
            }
            // Stopped with part of the index written: still schema 3,
            // and the next open builds the index whole.
            let store = SledStore::open(dir.path(), LOCK_GRACE).unwrap();
            assert_indexed(&store, 2_500);
        }
        assert!(stopped >= 3, "stopped within the index build: {stopped}");
    }
}
