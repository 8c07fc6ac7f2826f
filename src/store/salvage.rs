//! `orderwatch store salvage --to DIR`: copy what is still readable of a
//! damaged store into a new one, above all the undelivered outbox.
//!
//! The old store is never written: sled 0.34 has no read-only mode, and
//! opening a store runs its recovery, which may rewrite the log's tail. So
//! salvage first copies the store's files into a scratch directory beside
//! `DIR` and opens the copy; the original is only read (and checked not to
//! be in use by a running orderwatch). It follows that salvage can only
//! recover from a store sled can still open: when sled refuses the copy (or
//! panics on it), salvage says so and stops, and the files stay as they were.
//!
//! Trees are read one by one, outbox first, then dead letters, snapshots,
//! the event log and meta. Every record is checked to decode before it is
//! written (a record that does not is counted as damaged and skipped), and
//! a read error is counted and skipped past where sled lets us. Two things
//! are rebuilt rather than copied, so the new store is consistent with
//! itself:
//! - `outbox_order` (the per-order queue index) is derived from the salvaged
//!   outbox entries: a stale index entry whose outbox entry was lost would
//!   hold that order's later events back for ever.
//! - the event sequence in `meta` is at least the highest sequence salvaged,
//!   so new events never reuse a salvaged entry's key.
//! - `events_by_order` is derived from the salvaged log records, and
//!   `body_refs` counted from the salvaged outbox entries and dead letters;
//!   an entry whose body was lost is counted as lost (it has nothing to
//!   deliver), and a body nothing refers to any more is left behind.
//! - `changed` (the orders by last change, and whether each is still in
//!   its listing) is derived from the salvaged snapshots.
//!
//! Stores of schemas 1 to 4 are read too (schema 4 is today's with the
//! listed orders in a `listed` tree, and schema 3 without the `changed`
//! index, both derived anyway): their outbox entries, dead
//! letters and log records carry the event's body, which goes to `bodies`
//! as an upgrade would move it (see `migrate.rs`).
//!
//! And when a snapshot could not be read, the baseline markers of the
//! sources concerned (of every source, when the key itself was unreadable)
//! are dropped: the next poll then records those orders silently instead of
//! announcing them as new orders, which would be false events.

use super::{DeadLetter, META_EVENT_SEQ, META_SCHEMA, OutboxEntry, SCHEMA_VERSION, Snapshot};
use super::{LOCK_GRACE, SledStore, Store, StoreError, keys, read_u64};
use std::collections::BTreeSet;
use std::ops::Bound;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// What was read and written, tree by tree.
#[derive(Debug, Default)]
pub struct SalvageReport {
    pub trees: Vec<TreeReport>,
    /// Things the user should know (baselines dropped, index rebuilt...).
    pub notes: Vec<String>,
}

impl SalvageReport {
    #[cfg(test)]
    pub fn tree(&self, name: &str) -> Option<&TreeReport> {
        self.trees.iter().find(|t| t.name == name)
    }

    /// Records lost: unreadable plus damaged, over every tree.
    pub fn lost(&self) -> u64 {
        self.trees.iter().map(|t| t.unreadable + t.damaged).sum()
    }
}

#[derive(Debug, Default, Clone)]
pub struct TreeReport {
    pub name: &'static str,
    /// Records written to the new store.
    pub copied: u64,
    /// Read errors from sled (each may hide more than one record).
    pub unreadable: u64,
    /// Records read but not decodable: skipped.
    pub damaged: u64,
    /// False when a read error stopped the scan before the tree's end.
    pub complete: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SalvageError {
    #[error("there is no orderwatch store at {0} (no sled `db` file there): nothing to salvage")]
    NoStore(PathBuf),
    #[error(
        "{0} already exists and is not empty: salvage writes only into a new or empty directory, so nothing is ever overwritten"
    )]
    DestinationNotEmpty(PathBuf),
    #[error("the new store must be outside the old store's directory")]
    SameDirectory,
    #[error(
        "the store at {0} is in use by a running orderwatch: stop it first (salvage reads a stopped store)"
    )]
    InUse(PathBuf),
    #[error(
        "cannot read the store's files at {dir}: {reason}. Nothing was changed; fix the permissions (or run as the user that owns the store) and try again"
    )]
    CannotRead { dir: PathBuf, reason: String },
    #[error(
        "sled cannot open the store at {dir} (even a copy of it): {reason}. salvage can only recover from a store sled can still open; the old files were not changed: keep them for a later attempt or a bug report"
    )]
    Unopenable { dir: PathBuf, reason: String },
    #[error(
        "the store at {dir} has schema version {found}, this orderwatch reads version {expected}: salvage it with the orderwatch release that wrote it"
    )]
    Schema {
        dir: PathBuf,
        found: u64,
        expected: u64,
    },
    #[error("cannot write the new store: {0}")]
    Write(#[from] StoreError),
}

impl From<sled::Error> for SalvageError {
    fn from(e: sled::Error) -> Self {
        SalvageError::Write(e.into())
    }
}

/// The tree order: what matters most first, should anything give out
/// (the bodies the outbox needs right after it).
const TREES: [&str; 11] = [
    "outbox",
    "outbox_order",
    "dead_letters",
    "digest_held",
    "bodies",
    "body_refs",
    "snapshots",
    "events",
    "events_by_order",
    "deliveries",
    "meta",
];

/// Read errors tolerated in one tree before its scan is given up.
const MAX_ERRORS_PER_TREE: u64 = 64;

/// Salvage the store at `from` into a new store at `to`.
pub fn salvage(from: &Path, to: &Path) -> Result<SalvageReport, SalvageError> {
    if !from.join("db").is_file() {
        return Err(SalvageError::NoStore(from.to_owned()));
    }
    // Inside the old store, the copy would copy itself; checked before
    // anything is created there.
    if let (Ok(a), Ok(b)) = (from.canonicalize(), std::path::absolute(to))
        && b.starts_with(&a)
    {
        return Err(SalvageError::SameDirectory);
    }
    if std::fs::read_dir(to).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(SalvageError::DestinationNotEmpty(to.to_owned()));
    }
    std::fs::create_dir_all(to).map_err(|e| {
        SalvageError::Write(StoreError::Engine(format!(
            "cannot create {}: {e}",
            to.display()
        )))
    })?;
    // The same check through symbolic links, now that `to` exists.
    let same = match (from.canonicalize(), to.canonicalize()) {
        (Ok(a), Ok(b)) => b.starts_with(&a),
        _ => false,
    };
    if same {
        return Err(SalvageError::SameDirectory);
    }
    ensure_not_in_use(from)?;

    // The scratch copy lives beside the destination, and goes when done.
    let parent = to.parent().filter(|p| !p.as_os_str().is_empty());
    let scratch = tempfile::Builder::new()
        .prefix(".orderwatch-salvage-")
        .tempdir_in(parent.unwrap_or(Path::new(".")))
        .map_err(|e| SalvageError::Write(StoreError::Engine(format!("scratch directory: {e}"))))?;
    copy_dir(from, scratch.path()).map_err(|e| SalvageError::CannotRead {
        dir: from.to_owned(),
        reason: e.to_string(),
    })?;
    let old = open_copy(from, scratch.path())?;
    check_old_schema(from, &old)?;

    let new = SledStore::open(to, LOCK_GRACE)?;
    let mut report = SalvageReport::default();
    let mut max_seq = 0u64;
    // Salvaged outbox entries with their due time, for the index.
    let mut pending: Vec<(OutboxEntry, u64)> = Vec::new();
    // Salvaged dead letters: (key, seq).
    let mut dead_seqs: Vec<(Vec<u8>, u64)> = Vec::new();
    // Salvaged events kept for a digest: (key, seq).
    let mut held_seqs: Vec<(Vec<u8>, u64)> = Vec::new();
    // Salvaged log records: (seq, source, order id), for the index.
    let mut logged: Vec<(u64, String, String)> = Vec::new();
    let mut damaged_sources: BTreeSet<String> = BTreeSet::new();
    let mut unknown_snapshot_lost = false;

    for name in TREES {
        let tree = match catch(|| old.open_tree(name)) {
            Ok(tree) => tree,
            Err(reason) => {
                report
                    .notes
                    .push(format!("tree {name}: cannot open it: {reason}"));
                report.trees.push(TreeReport {
                    name,
                    unreadable: 1,
                    ..Default::default()
                });
                if name == "snapshots" {
                    unknown_snapshot_lost = true;
                }
                continue;
            }
        };
        let mut t = TreeReport {
            name,
            ..Default::default()
        };
        t.complete = scan(&tree, &mut t.unreadable, |key, value| {
            let kept = match name {
                // Schemas 1 and 2 kept the body inside the entry: it goes
                // to `bodies`, the entry is written without it.
                "outbox" => match serde_json::from_slice::<OutboxEntry>(value) {
                    Ok(entry) => {
                        max_seq = max_seq.max(entry.seq);
                        if let Some(body) = legacy_body(value) {
                            new.bodies
                                .insert(entry.seq.to_be_bytes(), body.as_bytes())?;
                        }
                        new.outbox.insert(key, encode(&entry)?)?;
                        pending.push((entry, keys::outbox_due(key).unwrap_or(0)));
                        true
                    }
                    Err(_) => false,
                },
                // Rebuilt below; read only to count.
                "outbox_order" | "body_refs" | "events_by_order" => return Ok(()),
                "dead_letters" => match serde_json::from_slice::<DeadLetter>(value) {
                    Ok(dead) => {
                        let seq = dead.entry.seq;
                        max_seq = max_seq.max(seq);
                        if let Some(body) = legacy_dead_body(value) {
                            new.bodies.insert(seq.to_be_bytes(), body.as_bytes())?;
                        }
                        new.dead_letters.insert(key, encode(&dead)?)?;
                        dead_seqs.push((key.to_vec(), seq));
                        true
                    }
                    Err(_) => false,
                },
                "digest_held" => match serde_json::from_slice::<OutboxEntry>(value) {
                    Ok(entry) => {
                        max_seq = max_seq.max(entry.seq);
                        new.digest_held.insert(key, encode(&entry)?)?;
                        held_seqs.push((key.to_vec(), entry.seq));
                        true
                    }
                    Err(_) => false,
                },
                "bodies" => match (read_u64(key), std::str::from_utf8(value)) {
                    (Some(_), Ok(_)) => {
                        new.bodies.insert(key, value)?;
                        true
                    }
                    _ => false,
                },
                "deliveries" => {
                    if key.len() > 8 && super::timeline::decode_delivery(value).is_some() {
                        new.deliveries.insert(key, value)?;
                        true
                    } else {
                        false
                    }
                }
                "snapshots" => {
                    if let Some(snap) = Snapshot::decode(value) {
                        new.snapshots.insert(key, value)?;
                        // The `changed` index is rebuilt from the
                        // snapshots.
                        let ms = super::snapshot::changed_ms(&snap.changed_at);
                        new.changed
                            .insert(keys::changed(ms, key), super::changed::flag(snap.listed))?;
                        true
                    } else {
                        match key.iter().position(|b| *b == 0) {
                            Some(end) => {
                                damaged_sources
                                    .insert(String::from_utf8_lossy(&key[..end]).into_owned());
                            }
                            None => unknown_snapshot_lost = true,
                        }
                        false
                    }
                }
                // Schema 3 logs which order; older ones the event JSON.
                "events" => match (read_u64(key), log_record(value)) {
                    (Some(seq), Some((source, order_id, old_body))) => {
                        max_seq = max_seq.max(seq);
                        if old_body {
                            new.bodies.insert(key, value)?;
                        }
                        new.events
                            .insert(key, super::log::encode_record(&source, &order_id))?;
                        logged.push((seq, source, order_id));
                        true
                    }
                    _ => false,
                },
                // meta: the schema version is the new store's own; the
                // event sequence is set below; baseline markers are copied.
                _ => {
                    if key == META_SCHEMA {
                        return Ok(());
                    }
                    if key == META_EVENT_SEQ {
                        match read_u64(value) {
                            Some(seq) => max_seq = max_seq.max(seq),
                            None => t.damaged += 1,
                        }
                        return Ok(());
                    }
                    new.meta.insert(key, value)?;
                    true
                }
            };
            if kept {
                t.copied += 1;
            } else {
                t.damaged += 1;
            }
            Ok(())
        })?;
        if name == "snapshots" && (t.unreadable > 0 || !t.complete) {
            unknown_snapshot_lost = true;
        }
        if matches!(name, "outbox_order" | "body_refs" | "events_by_order") {
            // Counted as read; the index written is the rebuilt one.
            t.copied = 0;
        }
        report.trees.push(t);
    }

    // An entry whose body was lost has nothing to deliver: counted as lost.
    let has_body = |seq: u64| new.bodies.contains_key(seq.to_be_bytes());
    let mut without_body = 0u64;
    let mut kept = Vec::with_capacity(pending.len());
    for (entry, due) in pending {
        if has_body(entry.seq)? {
            kept.push((entry, due));
        } else {
            new.outbox
                .remove(keys::outbox(&entry.sink, due, entry.seq))?;
            without_body += 1;
        }
    }
    let pending = kept;
    // Dead letters and events kept for a digest: each removed when its
    // body was lost, and counted.
    let without_body_in = |tree: &sled::Tree, seqs: &[(Vec<u8>, u64)]| -> Result<u64, StoreError> {
        let mut lost = 0u64;
        for (key, seq) in seqs {
            if !has_body(*seq)? {
                tree.remove(key)?;
                lost += 1;
            }
        }
        Ok(lost)
    };
    let dead_without_body = without_body_in(&new.dead_letters, &dead_seqs)?;
    let held_without_body = without_body_in(&new.digest_held, &held_seqs)?;
    for (name, lost) in [
        ("outbox", without_body),
        ("dead_letters", dead_without_body),
        ("digest_held", held_without_body),
    ] {
        if lost == 0 {
            continue;
        }
        if let Some(t) = report.trees.iter_mut().find(|t| t.name == name) {
            t.copied -= lost;
            t.damaged += lost;
        }
        report.notes.push(format!(
            "{name}: {lost} entr{} left out: the event body {} referred to was lost",
            if lost == 1 { "y" } else { "ies" },
            if lost == 1 { "it" } else { "they" }
        ));
    }
    // The per-order index, from the outbox entries that were salvaged.
    for (entry, due) in &pending {
        new.outbox_order.insert(
            keys::order_index(&entry.sink, &entry.source, &entry.order_id, entry.seq),
            &due.to_be_bytes(),
        )?;
    }
    if let Some(t) = report.trees.iter_mut().find(|t| t.name == "outbox_order") {
        t.copied = pending.len() as u64;
    }
    report.notes.push(format!(
        "outbox_order (the per-order delivery queue) was rebuilt from the {} salvaged outbox entries",
        pending.len()
    ));
    report
        .notes
        .push("changed (the orders by last change, and which are still in their listing) was rebuilt from the salvaged snapshots".to_owned());
    for (seq, source, order_id) in &logged {
        new.events_by_order
            .insert(keys::event_of_order(source, order_id, *seq), &[] as &[u8])?;
    }
    if let Some(t) = report
        .trees
        .iter_mut()
        .find(|t| t.name == "events_by_order")
    {
        t.copied = logged.len() as u64;
    }
    report.notes.push(format!(
        "events_by_order (each order's events) was rebuilt from the {} salvaged event log records; body_refs was counted from the salvaged outbox entries, dead letters and events kept for digests",
        logged.len()
    ));
    new.count_body_refs()?;
    if let Some(t) = report.trees.iter_mut().find(|t| t.name == "body_refs") {
        t.copied = new.body_refs.len() as u64;
    }
    new.drop_unreferenced_bodies()?;
    new.meta.insert(META_EVENT_SEQ, &max_seq.to_be_bytes())?;

    // Orders whose snapshot was lost must not come back as "new orders".
    let baselines: Vec<Vec<u8>> = new
        .meta
        .scan_prefix(b"baseline\0")
        .keys()
        .filter_map(Result::ok)
        .map(|k| k.to_vec())
        .collect();
    for key in baselines {
        let source = String::from_utf8_lossy(&key[b"baseline\0".len()..]).into_owned();
        if unknown_snapshot_lost || damaged_sources.contains(&source) {
            new.meta.remove(&key)?;
            report.notes.push(format!(
                "source {source}: snapshots were lost, so its baseline was dropped: the next poll records its orders again silently (no false `order.created`); a change to a lost order before that poll is not notified"
            ));
        }
    }
    new.flush()?;
    drop(new);
    // The new store must open as orderwatch opens it.
    Store::open(to)?.flush()?;
    Ok(report)
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Damaged(e.to_string()))
}

/// The body a schema 1 or 2 outbox entry carried.
fn legacy_body(value: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Legacy {
        event: Option<String>,
    }
    serde_json::from_slice::<Legacy>(value).ok()?.event
}

fn legacy_dead_body(value: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Legacy {
        entry: serde_json::Value,
    }
    let entry = serde_json::from_slice::<Legacy>(value).ok()?.entry;
    entry.get("event")?.as_str().map(str::to_owned)
}

/// `(source, order id, whether the record is an old one holding the
/// event's body)` of an event log record of any schema.
fn log_record(value: &[u8]) -> Option<(String, String, bool)> {
    if let Some((source, order_id)) = super::log::decode_record(value) {
        return Some((source, order_id, false));
    }
    let event: serde_json::Value = serde_json::from_slice(value).ok()?;
    let data = event.get("data")?;
    Some((
        data.get("source")?.as_str()?.to_owned(),
        data.get("order_id")?.as_str()?.to_owned(),
        true,
    ))
}

/// sled takes an exclusive lock on `db` while a store is open (`flock` on
/// Unix, `LockFileEx` on Windows, as std's): try the same lock (and let go
/// at once) to tell a running orderwatch.
fn ensure_not_in_use(dir: &Path) -> Result<(), SalvageError> {
    use std::fs::TryLockError;
    let file = std::fs::File::open(dir.join("db")).map_err(|e| SalvageError::CannotRead {
        dir: dir.to_owned(),
        reason: e.to_string(),
    })?;
    // A process that has just stopped may hold the lock a moment longer.
    let deadline = std::time::Instant::now() + super::LOCK_GRACE;
    let mut result = file.try_lock();
    while matches!(result, Err(TryLockError::WouldBlock)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        result = file.try_lock();
    }
    match result {
        Ok(()) => {
            let _ = file.unlock();
            Ok(())
        }
        Err(TryLockError::WouldBlock) => Err(SalvageError::InUse(dir.to_owned())),
        Err(TryLockError::Error(e)) => Err(SalvageError::CannotRead {
            dir: dir.to_owned(),
            reason: format!("cannot check whether it is in use: {e}"),
        }),
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).map_err(|e| {
                std::io::Error::new(e.kind(), format!("{}: {e}", entry.path().display()))
            })?;
        }
    }
    Ok(())
}

fn open_copy(original: &Path, copy: &Path) -> Result<sled::Db, SalvageError> {
    // A snapshot sled could not finish would make the copy read as corrupt
    // (see leftovers.rs); the copy is ours to change, the original is not.
    super::leftovers::remove_unfinished_snapshots(copy);
    let opened = catch(|| {
        sled::Config::new()
            .path(copy)
            .cache_capacity(super::CACHE_BYTES)
            .open()
    });
    opened.map_err(|reason| SalvageError::Unopenable {
        dir: original.to_owned(),
        reason,
    })
}

fn check_old_schema(dir: &Path, old: &sled::Db) -> Result<(), SalvageError> {
    let version = catch(|| old.open_tree("meta").and_then(|m| m.get(META_SCHEMA)));
    if let Ok(Some(v)) = version
        && let Some(found) = read_u64(&v)
    {
        // Schema 1 lacked the `listed` index, schemas 1 to 3 the
        // `changed` one, and schema 5 keeps the first in the second (all
        // rebuilt anyway); schemas 1 and 2 kept the
        // bodies inside the entries and the log, which each record is read
        // for.
        if !(1..=SCHEMA_VERSION).contains(&found) {
            return Err(SalvageError::Schema {
                dir: dir.to_owned(),
                found,
                expected: SCHEMA_VERSION,
            });
        }
    }
    Ok(())
}

/// Run a sled call; its errors and its panics (sled 0.34 panics on some
/// corruptions) become text.
fn catch<T>(f: impl FnOnce() -> sled::Result<T>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => Err(panic_text(&panic)),
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "unknown".to_owned());
    format!("sled panicked: {text}")
}

/// Visit every readable record of `tree` in key order. After a read error,
/// resume just past the last good key; give up when the same spot fails
/// again (or after too many errors). True when the scan reached the end.
fn scan(
    tree: &sled::Tree,
    errors: &mut u64,
    mut visit: impl FnMut(&[u8], &[u8]) -> Result<(), StoreError>,
) -> Result<bool, StoreError> {
    let mut after: Option<Vec<u8>> = None;
    loop {
        let start = match &after {
            Some(k) => Bound::Excluded(k.clone()),
            None => Bound::Unbounded,
        };
        let mut iter = tree.range::<Vec<u8>, _>((start, Bound::Unbounded));
        let mut progressed = false;
        loop {
            match catch_unwind(AssertUnwindSafe(|| iter.next())) {
                Ok(None) => return Ok(true),
                Ok(Some(Ok((k, v)))) => {
                    progressed = true;
                    visit(&k, &v)?;
                    after = Some(k.to_vec());
                }
                Ok(Some(Err(_))) | Err(_) => {
                    *errors += 1;
                    break;
                }
            }
        }
        if !progressed || *errors >= MAX_ERRORS_PER_TREE {
            return Ok(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventType;
    use crate::store::tests::due_bodies;
    use crate::store::{Commit, NewEvent};

    fn due_seqs(store: &Store, sink: &str) -> Vec<u64> {
        store
            .due(sink, u64::MAX, 100)
            .unwrap()
            .iter()
            .map(|d| d.entry.seq)
            .collect()
    }

    fn store_with_outbox(dir: &Path) -> SledStore {
        let store = SledStore::open(dir, LOCK_GRACE).unwrap();
        let snap = |id: &str, status: &str| Snapshot {
            revision: 1,
            hash: Snapshot::hash_of(id),
            listed: true,
            status: Some(status.into()),
            changed_at: "2026-01-01T00:00:00Z".into(),
            order: format!("{{\"id\":\"{id}\"}}"),
        };
        store
            .commit(&Commit {
                source: "tracking".into(),
                snapshots: vec![("1".into(), Some(snap("1", "Current")))],
                events: Vec::new(),
                mark_baseline: true,
                sync: None,
                health: None,
                ..Default::default()
            })
            .unwrap();
        for (i, id) in ["1", "2", "1"].iter().enumerate() {
            store
                .commit(&Commit {
                    source: "tracking".into(),
                    snapshots: vec![(id.to_string(), Some(snap(id, "Closed")))],
                    events: vec![NewEvent {
                        event_id: format!("evt_{i}"),
                        event_type: EventType::StatusChanged,
                        order_id: id.to_string(),
                        json: format!("{{\"n\":{i}}}"),
                        sinks: vec!["hook".into(), "mail".into()],
                    }],
                    mark_baseline: false,
                    sync: None,
                    health: None,
                    ..Default::default()
                })
                .unwrap();
        }
        store
    }

    #[test]
    fn copies_every_tree_and_keeps_the_outbox_order() {
        let tmp = tempfile::tempdir().unwrap();
        let (old_dir, new_dir) = (tmp.path().join("old"), tmp.path().join("new"));
        let old = store_with_outbox(&old_dir);
        let due = old.due("hook", u64::MAX, 100).unwrap();
        old.bury(&due[2], &due[2].entry, "gone").unwrap();
        old.flush().unwrap();
        drop(old);

        let report = salvage(&old_dir, &new_dir).unwrap();
        assert_eq!(report.lost(), 0, "{report:?}");
        assert_eq!(report.tree("outbox").unwrap().copied, 5);
        assert_eq!(report.tree("outbox_order").unwrap().copied, 5);
        assert_eq!(report.tree("dead_letters").unwrap().copied, 1);
        assert_eq!(report.tree("snapshots").unwrap().copied, 2);
        assert_eq!(report.tree("events").unwrap().copied, 3);
        assert_eq!(report.tree("bodies").unwrap().copied, 3);
        assert_eq!(report.tree("events_by_order").unwrap().copied, 3);
        assert_eq!(report.tree("body_refs").unwrap().copied, 3);

        let new = Store::open(&new_dir).unwrap();
        assert!(new.has_baseline("tracking").unwrap());
        assert_eq!(due_seqs(&new, "mail"), vec![1, 2, 3]);
        assert_eq!(
            due_bodies(&new.opened().unwrap(), "mail"),
            ["{\"n\":0}", "{\"n\":1}", "{\"n\":2}"].map(|b| Some(b.to_owned()))
        );
        // The index of listed orders is rebuilt: the vanish step sees them.
        assert_eq!(new.listed_ids("tracking").unwrap().len(), 2);
        // And the orders by last change (one time: by id, descending).
        let by_change: Vec<String> = new
            .orders_by_change(None)
            .map(|o| o.unwrap().at.order_id)
            .collect();
        assert_eq!(by_change, ["2", "1"]);
        // Order 1's second event still waits behind its first.
        let mail = new.due("mail", u64::MAX, 100).unwrap();
        assert!(new.is_first_of_order(&mail[0].entry).unwrap());
        assert!(!new.is_first_of_order(&mail[2].entry).unwrap());
        assert_eq!(new.dead_letters().unwrap().len(), 1);
        // New events continue the sequence.
        new.commit(&Commit {
            source: "tracking".into(),
            snapshots: Vec::new(),
            events: vec![NewEvent {
                event_id: "evt_new".into(),
                event_type: EventType::Created,
                order_id: "9".into(),
                json: "{}".into(),
                sinks: vec!["mail".into()],
            }],
            mark_baseline: false,
            sync: None,
            health: None,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(due_seqs(&new, "mail"), vec![1, 2, 3, 4]);

        // The old store is as it was, and still opens.
        let old = Store::open(&old_dir).unwrap();
        assert_eq!(old.outbox_len(), 5);
    }

    #[test]
    fn keeps_the_events_held_for_a_digest_with_their_bodies() {
        use crate::store::{Hold, Routed};
        let tmp = tempfile::tempdir().unwrap();
        let (old_dir, new_dir) = (tmp.path().join("old"), tmp.path().join("new"));
        let old = store_with_outbox(&old_dir);
        old.commit(&Commit {
            source: "tracking".into(),
            events: vec![NewEvent {
                event_id: "evt_held".into(),
                event_type: EventType::StatusChanged,
                order_id: "2".into(),
                json: "{\"held\":true}".into(),
                sinks: vec![Routed {
                    sink: "daily".into(),
                    hold: Hold::Digest,
                }],
            }],
            ..Default::default()
        })
        .unwrap();
        old.flush().unwrap();
        drop(old);
        let report = salvage(&old_dir, &new_dir).unwrap();
        assert_eq!(report.lost(), 0, "{report:?}");
        assert_eq!(report.tree("digest_held").unwrap().copied, 1);
        let new = Store::open(&new_dir).unwrap();
        let held = new.held_for_digest("daily", u64::MAX).unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].entry.event_id, "evt_held");
        assert_eq!(held[0].body.as_deref(), Some("{\"held\":true}"));
        // Its body is referred to, so nothing removed it as unreferenced,
        // and the outbox kept its own entries beside it.
        assert_eq!(due_seqs(&new, "mail"), vec![1, 2, 3]);
    }

    #[test]
    fn salvages_a_schema_3_store_and_builds_its_change_index() {
        let tmp = tempfile::tempdir().unwrap();
        let (old_dir, new_dir) = (tmp.path().join("old"), tmp.path().join("new"));
        let old = store_with_outbox(&old_dir);
        // Schema 3 is today's store without the `changed` index.
        old.changed.clear().unwrap();
        old.meta.insert(META_SCHEMA, &3u64.to_be_bytes()).unwrap();
        old.flush().unwrap();
        drop(old);
        let report = salvage(&old_dir, &new_dir).unwrap();
        assert_eq!(report.lost(), 0, "{report:?}");
        let new = Store::open(&new_dir).unwrap();
        let version = new.opened().unwrap().meta.get(META_SCHEMA).unwrap();
        assert_eq!(read_u64(&version.unwrap()), Some(SCHEMA_VERSION));
        let by_change: Vec<String> = new
            .orders_by_change(None)
            .map(|o| o.unwrap().at.order_id)
            .collect();
        assert_eq!(by_change, ["2", "1"]);
        assert_eq!(due_seqs(&new, "mail"), vec![1, 2, 3]);
    }

    #[test]
    fn salvages_schema_1_and_2_stores_into_todays_schema() {
        for version in [1, 2] {
            let tmp = tempfile::tempdir().unwrap();
            let (old_dir, new_dir) = (tmp.path().join("old"), tmp.path().join("new"));
            let bodies = crate::store::tests::write_old_store(&old_dir, version);
            let report = salvage(&old_dir, &new_dir).unwrap();
            assert_eq!(report.lost(), 0, "{report:?}");
            assert_eq!(report.tree("outbox").unwrap().copied, 3);
            assert_eq!(report.tree("dead_letters").unwrap().copied, 1);
            assert_eq!(report.tree("events").unwrap().copied, 3);
            let new = SledStore::open(&new_dir, LOCK_GRACE).unwrap();
            let stored: Vec<Vec<u8>> = new.bodies.iter().map(|i| i.unwrap().1.to_vec()).collect();
            assert_eq!(
                stored,
                bodies
                    .iter()
                    .map(|b| b.as_bytes().to_vec())
                    .collect::<Vec<_>>()
            );
            assert_eq!(
                due_bodies(&new, "hook"),
                [Some(bodies[0].clone()), Some(bodies[2].clone())]
            );
            assert_eq!(new.timeline("t", "1").unwrap().len(), 2);
            assert_eq!(new.recent_events().count(), 3);
            assert_eq!(new.body_refs.len(), 3);
            for item in new.outbox.iter() {
                let value: serde_json::Value = serde_json::from_slice(&item.unwrap().1).unwrap();
                assert!(value.get("event").is_none(), "{value}");
            }
        }
    }

    #[test]
    fn an_entry_whose_body_was_lost_is_counted_lost() {
        let tmp = tempfile::tempdir().unwrap();
        let (old_dir, new_dir) = (tmp.path().join("old"), tmp.path().join("new"));
        let old = store_with_outbox(&old_dir);
        old.bodies.remove(2u64.to_be_bytes()).unwrap();
        old.flush().unwrap();
        drop(old);
        let report = salvage(&old_dir, &new_dir).unwrap();
        assert_eq!(report.tree("outbox").unwrap().copied, 4, "{report:?}");
        assert_eq!(report.tree("outbox").unwrap().damaged, 2);
        let new = Store::open(&new_dir).unwrap();
        assert_eq!(due_seqs(&new, "mail"), vec![1, 3]);
    }

    #[test]
    fn refuses_a_used_destination_and_a_missing_store() {
        let tmp = tempfile::tempdir().unwrap();
        let (old_dir, new_dir) = (tmp.path().join("old"), tmp.path().join("new"));
        assert!(matches!(
            salvage(&old_dir, &new_dir),
            Err(SalvageError::NoStore(_))
        ));
        assert!(!old_dir.exists(), "salvage created nothing at the source");
        drop(store_with_outbox(&old_dir));
        std::fs::create_dir_all(&new_dir).unwrap();
        std::fs::write(new_dir.join("keep.txt"), "mine").unwrap();
        assert!(matches!(
            salvage(&old_dir, &new_dir),
            Err(SalvageError::DestinationNotEmpty(_))
        ));
        assert_eq!(
            std::fs::read_to_string(new_dir.join("keep.txt")).unwrap(),
            "mine"
        );
        assert!(matches!(
            salvage(&old_dir, &old_dir.join("inside")),
            Err(SalvageError::SameDirectory)
        ));
        assert!(
            !old_dir.join("inside").exists(),
            "nothing created in the old store"
        );
    }

    #[test]
    fn refuses_a_store_in_use() {
        let tmp = tempfile::tempdir().unwrap();
        let old_dir = tmp.path().join("old");
        let open = store_with_outbox(&old_dir);
        // The same process: the lock (sled's and std's alike) is per open
        // file description, so a second descriptor conflicts just as
        // another process would.
        let err = salvage(&old_dir, &tmp.path().join("new")).unwrap_err();
        assert!(matches!(err, SalvageError::InUse(_)), "{err}");
        drop(open);
    }

    #[test]
    fn damaged_records_are_skipped_and_baselines_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let (old_dir, new_dir) = (tmp.path().join("old"), tmp.path().join("new"));
        let old = store_with_outbox(&old_dir);
        old.snapshots
            .insert(keys::snapshot("tracking", "77"), &b"\x09garbage"[..])
            .unwrap();
        old.outbox
            .insert(keys::outbox("hook", 1, 99), &b"not json"[..])
            .unwrap();
        old.flush().unwrap();
        drop(old);

        let report = salvage(&old_dir, &new_dir).unwrap();
        assert_eq!(report.tree("outbox").unwrap().damaged, 1);
        assert_eq!(report.tree("outbox").unwrap().copied, 6);
        assert_eq!(report.tree("snapshots").unwrap().damaged, 1);
        assert_eq!(report.lost(), 2);
        let new = Store::open(&new_dir).unwrap();
        assert!(!new.has_baseline("tracking").unwrap(), "{report:?}");
        assert!(new.snapshot("tracking", "77").unwrap().is_none());
        assert!(new.snapshot("tracking", "1").unwrap().is_some());
    }
}
