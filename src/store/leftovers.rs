//! Snapshot files sled 0.34.7 began but could not finish, and that would
//! then make the store read as corrupt.
//!
//! How sled writes a snapshot (`pagecache/snapshot.rs`, `write_snapshot`):
//! it creates `snap.<LSN, 16 hex digits>.generating`, writes the snapshot's
//! bytes, then 8 bytes of length and a CRC-32 of those bytes, calls
//! `fsync`, and only then renames the file to `snap.<LSN>` and removes the
//! older snapshots. In 0.34.7 this happens only while a store is being
//! opened, when its log has grown past the last snapshot, so any command
//! that opens a store may write one. On a full disk the `write` fails after
//! the file was created: a zero-byte (or cut-off) `.generating` file stays.
//!
//! sled reads the snapshot file whose name sorts last, and its filter does
//! not leave `.generating` files out; `snap.<LSN>.generating` sorts after
//! every finished snapshot of a lower or equal LSN. So the unfinished file
//! is read, fails sled's length or CRC check, and the store "is corrupt"
//! although nothing in it is damaged.
//!
//! Such a file is safe to remove, and only such a file is removed:
//! - its contents fail the very check sled applies (more than 12 bytes,
//!   and the CRC-32 of what precedes the last 12 bytes equals the last 4):
//!   a file sled had finished always passes it, because sled `fsync`s the
//!   complete contents before the rename;
//! - its name still ends in `.generating`: sled never renamed it, so it
//!   never took it for a snapshot and removed no older snapshot because of
//!   it. The previous snapshot (or none, for a store that never had one)
//!   and the log it was built from are as they were, which is exactly what
//!   sled recovers from after a crash: it reads that snapshot and replays
//!   the log after it.
//!
//! A `.generating` file that passes the check (sled stopped between the
//! `fsync` and the rename) is complete and correct, and is left for sled
//! to use. Finished snapshots are never touched.

use std::io::Read;
use std::path::{Path, PathBuf};

/// sled's trailer: 8 bytes of length, then a 4-byte CRC-32 (little endian).
const TRAILER: usize = 12;

/// Remove the snapshot files in `dir` that sled began and could not finish;
/// returns the paths removed. Errors reading the directory are not ours to
/// report: the open that follows says what is wrong.
pub(crate) fn remove_unfinished_snapshots(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let is_candidate = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(is_generating_name);
        if !is_candidate || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        if matches!(passes_sled_check(&path), Some(false)) && std::fs::remove_file(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

/// `snap.` + 16 hex digits + `.generating`, exactly as sled names them.
fn is_generating_name(name: &str) -> bool {
    name.strip_prefix("snap.")
        .and_then(|rest| rest.strip_suffix(".generating"))
        .is_some_and(|lsn| lsn.len() == 16 && lsn.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether the file passes sled's own snapshot check; `None` when it cannot
/// be read (then it is left alone).
fn passes_sled_check(path: &Path) -> Option<bool> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .read_to_end(&mut bytes)
        .ok()?;
    if bytes.len() <= TRAILER {
        return Some(false);
    }
    let (body, trailer) = bytes.split_at(bytes.len() - TRAILER);
    let expected = u32::from_le_bytes(trailer[8..].try_into().ok()?);
    Some(crc32fast::hash(body) == expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished_snapshot_bytes(body: &[u8]) -> Vec<u8> {
        let mut bytes = body.to_vec();
        bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        bytes
    }

    #[test]
    fn only_unfinished_generating_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str| dir.path().join(name);
        std::fs::write(p("snap.000000000000D849"), b"").unwrap();
        std::fs::write(p("snap.000000000000FBEE.generating"), b"").unwrap();
        std::fs::write(p("snap.000000000000FBEF.generating"), b"cut off in the mid").unwrap();
        std::fs::write(
            p("snap.000000000000FBF0.generating"),
            finished_snapshot_bytes(b"a complete snapshot"),
        )
        .unwrap();
        std::fs::write(p("snap.nothex.generating"), b"").unwrap();
        std::fs::write(p("db"), b"").unwrap();

        let mut removed = remove_unfinished_snapshots(dir.path());
        removed.sort();
        assert_eq!(
            removed,
            [
                p("snap.000000000000FBEE.generating"),
                p("snap.000000000000FBEF.generating")
            ]
        );
        for kept in [
            "snap.000000000000D849",
            "snap.000000000000FBF0.generating",
            "snap.nothex.generating",
            "db",
        ] {
            assert!(p(kept).exists(), "{kept} is kept");
        }
    }
}
