//! Who is logged in to the web UI: a session per login, kept in memory
//! only (a restart logs everyone out), each with its own CSRF token and an
//! expiry. Ids and tokens are 32 bytes from the thread's CSPRNG.

use rand::Rng;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a session lasts after its login.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 60 * 60);
/// Sessions kept at most: a script logging in in a loop cannot fill memory;
/// past this the oldest goes first.
const MAX_SESSIONS: usize = 1024;

#[derive(Clone)]
pub struct Session {
    /// The token every form of this session carries back.
    pub csrf: String,
    /// What the last action did, shown once on the next page.
    pub notice: Option<String>,
    expires: Instant,
}

#[derive(Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// A new session: its id (for the cookie) and the session.
    pub fn open(&self) -> (String, Session) {
        let id = random_token();
        let session = Session {
            csrf: random_token(),
            notice: None,
            expires: Instant::now() + SESSION_TTL,
        };
        let mut by_id = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        by_id.retain(|_, s| s.expires > now);
        if by_id.len() >= MAX_SESSIONS
            && let Some(oldest) = by_id
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(id, _)| id.clone())
        {
            by_id.remove(&oldest);
        }
        by_id.insert(id.clone(), session.clone());
        (id, session)
    }

    /// The live session of this id, if any.
    pub fn get(&self, id: &str) -> Option<Session> {
        let by_id = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        by_id
            .get(id)
            .filter(|s| s.expires > Instant::now())
            .cloned()
    }

    /// Keep `notice` for the session's next page.
    pub fn tell(&self, id: &str, notice: String) {
        let mut by_id = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = by_id.get_mut(id) {
            s.notice = Some(notice);
        }
    }

    /// The notice kept for this page, once.
    pub fn take_notice(&self, id: &str) -> Option<String> {
        let mut by_id = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        by_id.get_mut(id).and_then(|s| s.notice.take())
    }

    pub fn close(&self, id: &str) {
        let mut by_id = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        by_id.remove(id);
    }
}

/// 32 random bytes as hex.
pub fn random_token() -> String {
    hex::encode(rand::rng().random::<[u8; 32]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_id_until_closed() {
        let sessions = Sessions::default();
        let (id, session) = sessions.open();
        assert_eq!(id.len(), 64);
        assert_ne!(id, session.csrf);
        assert_eq!(sessions.get(&id).map(|s| s.csrf), Some(session.csrf));
        assert!(sessions.get("nosuch").is_none());
        sessions.close(&id);
        assert!(sessions.get(&id).is_none());
    }

    #[test]
    fn logging_in_in_a_loop_keeps_a_bounded_number_of_sessions() {
        let sessions = Sessions::default();
        let (first, _) = sessions.open();
        for _ in 0..MAX_SESSIONS {
            sessions.open();
        }
        assert!(sessions.get(&first).is_none());
        assert_eq!(sessions.by_id.lock().unwrap().len(), MAX_SESSIONS);
    }
}
