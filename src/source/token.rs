//! The OAuth 2.0 client-credentials token of one source, cached.
//!
//! One token is shared by all calls of the source. It is fetched again a little
//! before it expires, and at once when a call answers 401; the lock makes sure
//! only one fetch is in flight however many calls want a token.

use crate::secret::Secret;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

pub(crate) struct TokenCache {
    current: Mutex<Option<CachedToken>>,
}

struct CachedToken {
    value: Arc<Secret>,
    refresh_at: Instant,
}

/// What the token endpoint answered, parsed.
pub(crate) struct FreshToken {
    pub value: Secret,
    pub expires_in: Duration,
}

impl TokenCache {
    pub fn new() -> Self {
        TokenCache {
            current: Mutex::new(None),
        }
    }

    /// The cached token, or a new one from `fetch` when there is none or it is
    /// about to expire. Concurrent callers wait for the one fetch.
    pub async fn get<F, Fut, E>(&self, fetch: F) -> Result<Arc<Secret>, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<FreshToken, E>>,
    {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref()
            && Instant::now() < token.refresh_at
        {
            return Ok(token.value.clone());
        }
        let fresh = fetch().await?;
        let value = Arc::new(fresh.value);
        let now = Instant::now();
        // The lifetime is clamped where it is read; an Instant that still
        // cannot hold it means "refresh before the next call".
        let refresh_at = now
            .checked_add(refresh_margin(fresh.expires_in))
            .unwrap_or(now);
        *current = Some(CachedToken {
            value: value.clone(),
            refresh_at,
        });
        Ok(value)
    }

    /// Forget `stale` after a 401, unless another call already replaced it.
    pub async fn invalidate(&self, stale: &Arc<Secret>) {
        let mut current = self.current.lock().await;
        if current
            .as_ref()
            .is_some_and(|t| Arc::ptr_eq(&t.value, stale))
        {
            *current = None;
        }
    }
}

/// Refresh ahead of expiry: a tenth of the lifetime early, at most a minute.
fn refresh_margin(expires_in: Duration) -> Duration {
    let early = (expires_in / 10).min(Duration::from_secs(60));
    expires_in.saturating_sub(early)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn fresh(v: &str, secs: u64) -> FreshToken {
        FreshToken {
            value: Secret::new(v),
            expires_in: Duration::from_secs(secs),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn cached_until_shortly_before_expiry() {
        let cache = TokenCache::new();
        let fetches = AtomicUsize::new(0);
        let fetch = || async {
            fetches.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(fresh("t", 100))
        };
        cache.get(fetch).await.unwrap();
        cache.get(fetch).await.unwrap();
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(91)).await;
        cache.get(fetch).await.unwrap();
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn invalidate_only_drops_the_stale_token() {
        let cache = TokenCache::new();
        let a = cache
            .get(|| async { Ok::<_, ()>(fresh("a", 3600)) })
            .await
            .unwrap();
        cache.invalidate(&a).await;
        let b = cache
            .get(|| async { Ok::<_, ()>(fresh("b", 3600)) })
            .await
            .unwrap();
        assert_eq!(b.expose(), "b");
        cache.invalidate(&a).await;
        let still_b = cache
            .get(|| async { Ok::<_, ()>(fresh("c", 3600)) })
            .await
            .unwrap();
        assert_eq!(still_b.expose(), "b");
    }
}
