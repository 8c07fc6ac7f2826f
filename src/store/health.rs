//! Each source's health record, in `meta` under `health \0 source`: how
//! many cycles in a row have failed since when, and which source events were
//! already told. It is written in the same transaction as the event it
//! leads to, so "once" holds across restarts and crashes: a crash before
//! the commit loses both (the next cycle tells it, under the same id), one
//! after keeps both.

use super::{SledStore, StoreError};
use serde::{Deserialize, Serialize};

/// A source's health, as the last cycle left it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceHealth {
    /// Unix ms of the first failed cycle after the last good one; `None`
    /// while the source is well.
    pub failing_since_ms: Option<u64>,
    /// Failed cycles in a row.
    pub failures: u64,
    /// `source.failing` was committed for this failing episode.
    pub failing_told: bool,
    /// The `api_key_expires` date whose `source.credentials_expiring` was
    /// committed: a new date (a renewed key) is told again.
    pub expiry_told: Option<String>,
}

pub(super) fn key(source: &str) -> Vec<u8> {
    let mut k = b"health\0".to_vec();
    k.extend_from_slice(source.as_bytes());
    k
}

/// The record as stored in a transaction over `meta`.
pub(super) fn write(
    meta: &sled::transaction::TransactionalTree,
    source: &str,
    health: &SourceHealth,
) -> Result<(), sled::transaction::ConflictableTransactionError<StoreError>> {
    let value = serde_json::to_vec(health).map_err(|e| {
        sled::transaction::ConflictableTransactionError::Abort(StoreError::Damaged(e.to_string()))
    })?;
    meta.insert(key(source), value)?;
    Ok(())
}

impl SledStore {
    /// The source's health record; a well source's when it has none (or
    /// what is stored does not decode).
    pub fn source_health(&self, source: &str) -> Result<SourceHealth, StoreError> {
        Ok(self
            .meta
            .get(key(source))?
            .and_then(|v| serde_json::from_slice(&v).ok())
            .unwrap_or_default())
    }
}
