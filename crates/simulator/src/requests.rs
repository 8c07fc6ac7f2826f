//! The log of the API calls the simulator served (token, list and detail;
//! not the admin endpoints), oldest first: what `GET /_sim/requests` serves,
//! so a test can tell from the server's side who called what and when (two
//! replicas polling one source at once, say).
//!
//! A call is logged when it arrives, before any injected latency, so the
//! order of the log is the order calls reached the simulator; its status is
//! filled in when it is answered, and stays `null` for a call whose client
//! went away first. The client is named by the number of its bearer token
//! in the token book (`token-3`), never by the token itself.

use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Entries beyond this drop the oldest, so a simulator left running for
/// days holds a bounded log. Sequence numbers keep counting, so `since`
/// still works and a gap shows that entries were dropped.
pub(crate) const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct RequestEntry {
    pub(crate) seq: u64,
    /// When it arrived, in unix milliseconds.
    pub(crate) time: u64,
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: Option<String>,
    pub(crate) status: Option<u16>,
    /// `token-N` for the Nth token issued (a token call names the token it
    /// issued), `unknown` for a bearer token never issued, `null` for a
    /// call with no bearer token.
    pub(crate) client: Option<String>,
}

/// The label of the Nth token issued.
pub(crate) fn client_label(number: Option<u64>) -> String {
    match number {
        Some(n) => format!("token-{n}"),
        None => "unknown".to_owned(),
    }
}

#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    entries: VecDeque<RequestEntry>,
    last_seq: u64,
}

impl RequestLog {
    /// Log a call as it arrives; returns its sequence number, for
    /// [`RequestLog::answered`].
    pub(crate) fn arrived(
        &mut self,
        method: &str,
        path: &str,
        query: Option<&str>,
        client: Option<String>,
    ) -> u64 {
        self.last_seq += 1;
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.pop_front();
        }
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.entries.push_back(RequestEntry {
            seq: self.last_seq,
            time,
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.map(str::to_owned),
            status: None,
            client,
        });
        self.last_seq
    }

    /// The answer to call `seq`, and the client a token call turned out to
    /// be (the token it issued). A call already dropped from the ring is
    /// not looked for.
    pub(crate) fn answered(&mut self, seq: u64, status: u16, client: Option<String>) {
        let Some(entry) = self.position(seq).and_then(|i| self.entries.get_mut(i)) else {
            return;
        };
        entry.status = Some(status);
        if client.is_some() {
            entry.client = client;
        }
    }

    /// Where entry `seq` is: sequence numbers are consecutive, so it is
    /// arithmetic.
    fn position(&self, seq: u64) -> Option<usize> {
        let first = self.entries.front()?.seq;
        usize::try_from(seq.checked_sub(first)?).ok()
    }

    /// Entries with a sequence number above `since` (all with `since` 0).
    pub(crate) fn since(&self, since: u64) -> Vec<&RequestEntry> {
        let skip = match self.position(since.saturating_add(1)) {
            Some(skip) => skip,
            // Before the oldest entry kept (or nothing kept): all of them.
            None if self.entries.front().is_some_and(|e| since < e.seq) => 0,
            None => return Vec::new(),
        };
        self.entries.iter().skip(skip).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(log: &RequestLog, since: u64) -> Vec<u64> {
        log.since(since).iter().map(|e| e.seq).collect()
    }

    #[test]
    fn logs_calls_in_arrival_order_with_their_answers() {
        let mut log = RequestLog::default();
        let token = log.arrived("POST", "/oauth/v3/token", None, None);
        let list = log.arrived(
            "GET",
            "/order-tracking/b2b/v1/orders",
            Some("offset=0&limit=25"),
            Some(client_label(Some(1))),
        );
        let lost = log.arrived("GET", "/x", None, Some(client_label(None)));
        // Answered out of order: the log keeps the order of arrival.
        log.answered(list, 200, None);
        log.answered(token, 200, Some(client_label(Some(1))));
        let all = log.since(0);
        assert_eq!(seqs(&log, 0), vec![token, list, lost]);
        assert_eq!(all[0].client.as_deref(), Some("token-1"));
        assert_eq!(all[0].status, Some(200));
        assert_eq!(all[1].query.as_deref(), Some("offset=0&limit=25"));
        assert_eq!(all[1].client.as_deref(), Some("token-1"));
        assert_eq!(all[2].client.as_deref(), Some("unknown"));
        assert_eq!(all[2].status, None, "never answered");
        assert!(all[0].time > 0 && all[0].time <= all[2].time);
        assert_eq!(seqs(&log, list), vec![lost]);
        assert!(seqs(&log, lost).is_empty());
        assert!(seqs(&log, u64::MAX).is_empty());
    }

    #[test]
    fn keeps_only_the_last_entries() {
        let mut log = RequestLog::default();
        for _ in 0..MAX_ENTRIES + 5 {
            log.arrived("GET", "/", None, None);
        }
        let all = log.since(0);
        assert_eq!(all.len(), MAX_ENTRIES);
        assert_eq!(all[0].seq, 6, "the five oldest dropped");
        // An answer to a dropped call is ignored; a kept one is recorded.
        log.answered(1, 200, None);
        log.answered(6, 503, None);
        assert_eq!(log.since(0)[0].status, Some(503));
        assert_eq!(seqs(&log, 3).len(), MAX_ENTRIES, "since before the ring");
        assert_eq!(seqs(&log, 7).first(), Some(&8));
    }
}
