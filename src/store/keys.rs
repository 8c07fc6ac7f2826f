//! Key layouts. Big-endian numbers keep sled's byte order equal to time and
//! sequence order, so "what is due" and "what came first" are range scans.

/// `source \0 order_id`
pub(crate) fn snapshot(source: &str, order_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(source.len() + 1 + order_id.len());
    k.extend_from_slice(source.as_bytes());
    k.push(0);
    k.extend_from_slice(order_id.as_bytes());
    k
}

pub(crate) fn snapshot_prefix(source: &str) -> Vec<u8> {
    let mut k = source.as_bytes().to_vec();
    k.push(0);
    k
}

/// `changed_ms snapshot key` (big-endian milliseconds, then `source \0
/// order_id`): every order by the time of its last change, so "latest
/// change first" is a reverse range scan, across pages.
pub(crate) fn changed(changed_ms: u64, snapshot_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + snapshot_key.len());
    k.extend_from_slice(&changed_ms.to_be_bytes());
    k.extend_from_slice(snapshot_key);
    k
}

/// `(changed_ms, source, order_id)` of a [`changed`] key.
pub(crate) fn changed_parts(key: &[u8]) -> Option<(u64, &str, &str)> {
    let ms = u64::from_be_bytes(key.get(..8)?.try_into().ok()?);
    let rest = &key[8..];
    let end = rest.iter().position(|b| *b == 0)?;
    let source = std::str::from_utf8(&rest[..end]).ok()?;
    let order_id = std::str::from_utf8(&rest[end + 1..]).ok()?;
    Some((ms, source, order_id))
}

/// `sink \0 due_ms seq`: due entries of a sink are a prefix range up to now.
pub(crate) fn outbox(sink: &str, due_ms: u64, seq: u64) -> Vec<u8> {
    let mut k = sink_prefix(sink);
    k.extend_from_slice(&due_ms.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub(crate) fn sink_prefix(sink: &str) -> Vec<u8> {
    let mut k = sink.as_bytes().to_vec();
    k.push(0);
    k
}

/// `sink \0 source \0 len(order_id) order_id seq`: the pending entries of one
/// order at one sink, oldest first. The length prefix keeps an id that
/// contains a zero byte from reading as a prefix of another.
pub(crate) fn order_index(sink: &str, source: &str, order_id: &str, seq: u64) -> Vec<u8> {
    let mut k = order_prefix(sink, source, order_id);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub(crate) fn order_prefix(sink: &str, source: &str, order_id: &str) -> Vec<u8> {
    let mut k = sink_prefix(sink);
    k.extend_from_slice(source.as_bytes());
    k.push(0);
    k.extend_from_slice(&(order_id.len() as u32).to_be_bytes());
    k.extend_from_slice(order_id.as_bytes());
    k
}

/// `sink \0 seq`
pub(crate) fn dead_letter(sink: &str, seq: u64) -> Vec<u8> {
    let mut k = sink_prefix(sink);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// `source \0 len(order_id) order_id seq`: the logged events of one order,
/// oldest first (the length prefix as in [`order_index`]).
pub(crate) fn event_of_order(source: &str, order_id: &str, seq: u64) -> Vec<u8> {
    let mut k = event_order_prefix(source, order_id);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub(crate) fn event_order_prefix(source: &str, order_id: &str) -> Vec<u8> {
    let mut k = source.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&(order_id.len() as u32).to_be_bytes());
    k.extend_from_slice(order_id.as_bytes());
    k
}

/// `seq sink`: the sequence first, so the deliveries of the events that
/// left the event log are one range, removed with them.
pub(crate) fn delivery(seq: u64, sink: &str) -> Vec<u8> {
    let mut k = seq.to_be_bytes().to_vec();
    k.extend_from_slice(sink.as_bytes());
    k
}

pub(crate) fn tail_u64(key: &[u8]) -> Option<u64> {
    let start = key.len().checked_sub(8)?;
    Some(u64::from_be_bytes(key[start..].try_into().ok()?))
}

/// The `due_ms` of an outbox key (the 8 bytes before the seq).
pub(crate) fn outbox_due(key: &[u8]) -> Option<u64> {
    let start = key.len().checked_sub(16)?;
    Some(u64::from_be_bytes(key[start..start + 8].try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_keys_sort_by_due_then_seq() {
        let a = outbox("s", 5, 9);
        let b = outbox("s", 6, 1);
        let c = outbox("s", 6, 2);
        assert!(a < b && b < c);
        assert_eq!(outbox_due(&b), Some(6));
        assert_eq!(tail_u64(&c), Some(2));
    }

    #[test]
    fn event_keys_of_one_order_sort_by_seq_and_do_not_overlap() {
        let a = event_of_order("src", "1", 2);
        let b = event_of_order("src", "1", 10);
        assert!(a < b);
        assert!(!event_of_order("src", "10", 1).starts_with(&event_order_prefix("src", "1")));
        assert!(delivery(1, "zz") < delivery(2, "a"));
    }

    #[test]
    fn change_keys_sort_by_time_then_order() {
        let a = changed(5, &snapshot("z", "9"));
        let b = changed(6, &snapshot("a", "1"));
        let c = changed(6, &snapshot("a", "2"));
        assert!(a < b && b < c);
        assert_eq!(changed_parts(&c), Some((6, "a", "2")));
        assert_eq!(changed_parts(&[1, 2]), None);
    }

    #[test]
    fn order_prefixes_do_not_overlap() {
        let one = order_prefix("s", "src", "1");
        let ten = order_index("s", "src", "10", 1);
        assert!(!ten.starts_with(&one));
    }
}
