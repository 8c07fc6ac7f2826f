//! A snapshot: the last state orderwatch saw of one order.
//!
//! Stored in a small binary layout so a quiet cycle can compare hashes without
//! parsing the order JSON: version byte, revision, content hash, flags, status,
//! change time, then the order's JSON exactly as the API sent it.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Increases by one with every change that made an event.
    pub revision: u64,
    /// xxh3-128 of the order's JSON text as last read.
    pub hash: u128,
    /// False once the order left the listing (a filter such as
    /// `status=Current`) and its detail was read: it is not fetched again by
    /// id every cycle, only compared when it comes back.
    pub listed: bool,
    pub status: Option<String>,
    /// RFC 3339 time of the last change that made an event (or the baseline).
    pub changed_at: String,
    pub order: String,
}

const FORMAT: u8 = 1;

impl Snapshot {
    pub fn hash_of(order_json: &str) -> u128 {
        xxhash_rust::xxh3::xxh3_128(order_json.as_bytes())
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let status = self.status.as_deref().unwrap_or("");
        let mut out =
            Vec::with_capacity(40 + status.len() + self.changed_at.len() + self.order.len());
        out.push(FORMAT);
        out.extend_from_slice(&self.revision.to_be_bytes());
        out.extend_from_slice(&self.hash.to_be_bytes());
        out.push(u8::from(self.listed) | (u8::from(self.status.is_some()) << 1));
        put_str(&mut out, status);
        put_str(&mut out, &self.changed_at);
        out.extend_from_slice(self.order.as_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Snapshot> {
        let mut r = Reader(bytes);
        if r.take(1)?[0] != FORMAT {
            return None;
        }
        let revision = u64::from_be_bytes(r.take(8)?.try_into().ok()?);
        let hash = u128::from_be_bytes(r.take(16)?.try_into().ok()?);
        let flags = r.take(1)?[0];
        let status = r.string()?;
        let changed_at = r.string()?;
        let order = std::str::from_utf8(r.0).ok()?.to_owned();
        Some(Snapshot {
            revision,
            hash,
            listed: flags & 1 != 0,
            status: (flags & 2 != 0).then_some(status),
            changed_at,
            order,
        })
    }

    /// Only the hash and listed flag, for the quiet-cycle comparison.
    pub(crate) fn peek_hash(bytes: &[u8]) -> Option<(u128, bool)> {
        if bytes.len() < 26 || bytes[0] != FORMAT {
            return None;
        }
        let hash = u128::from_be_bytes(bytes[9..25].try_into().ok()?);
        Some((hash, bytes[25] & 1 != 0))
    }

    /// The unix milliseconds of `changed_at`, without decoding the order:
    /// where the snapshot sits in the by-change index. `None` for bytes that
    /// are not a snapshot.
    pub(crate) fn peek_changed_ms(bytes: &[u8]) -> Option<u64> {
        if bytes.first() != Some(&FORMAT) {
            return None;
        }
        let mut r = Reader(bytes.get(26..)?);
        let status_len = u32::from_be_bytes(r.take(4)?.try_into().ok()?) as usize;
        r.take(status_len)?;
        let len = u32::from_be_bytes(r.take(4)?.try_into().ok()?) as usize;
        Some(changed_ms(std::str::from_utf8(r.take(len)?).ok()?))
    }
}

/// `changed_at` as unix milliseconds; a time that does not read (none
/// should: orderwatch writes them) counts as the oldest.
pub(crate) fn changed_ms(changed_at: &str) -> u64 {
    humantime::parse_rfc3339_weak(changed_at.trim())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..len as usize]);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn string(&mut self) -> Option<String> {
        let len = u32::from_be_bytes(self.take(4)?.try_into().ok()?) as usize;
        Some(std::str::from_utf8(self.take(len)?).ok()?.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for status in [None, Some("Current".to_owned()), Some(String::new())] {
            let s = Snapshot {
                revision: 7,
                hash: Snapshot::hash_of("{\"id\":\"1\"}"),
                listed: true,
                status,
                changed_at: "2026-11-22T08:00:00Z".into(),
                order: "{\"id\":\"1\"}".into(),
            };
            let bytes = s.encode();
            assert_eq!(Snapshot::decode(&bytes), Some(s.clone()));
            assert_eq!(Snapshot::peek_hash(&bytes), Some((s.hash, true)));
            assert_eq!(Snapshot::peek_changed_ms(&bytes), Some(1_795_334_400_000));
        }
    }

    #[test]
    fn garbage_does_not_decode() {
        assert_eq!(Snapshot::decode(&[]), None);
        assert_eq!(Snapshot::decode(&[2, 0, 0]), None);
        assert_eq!(Snapshot::decode(&[1, 0, 0]), None);
        assert_eq!(Snapshot::peek_changed_ms(&[1, 0, 0]), None);
        assert_eq!(changed_ms("not a time"), 0);
    }
}
