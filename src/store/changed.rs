//! The orders by the time of their last change (the `changed` tree), newest
//! first: what "sorted by last change" reads, across pages, without reading
//! every snapshot. The index is written with the snapshots (`write_snapshot`
//! in `mod.rs`) and built by the upgrade to schema 4 (`migrate.rs`).

use super::{SledStore, Snapshot, StoreError, keys, snapshot};
use std::ops::Bound;

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
        let version = store.meta.get(META_SCHEMA).unwrap().unwrap();
        assert_eq!(
            super::super::read_u64(&version),
            Some(super::super::SCHEMA_VERSION)
        );
        let expected: Vec<String> = (0..n).rev().map(|i| format!("{i:05}")).collect();
        assert_eq!(ids(store, None), expected);
        assert_eq!(store.changed.len() as u64, n);
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
