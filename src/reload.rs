//! Reloading the config of a running orderwatch (README "Reload"): what a
//! reload is asked through (SIGHUP and `POST /api/v1/reload` both send a
//! [`ReloadRequest`] to the one task that owns the running parts, so two
//! reloads never overlap), how a new config is read and checked before
//! anything changes ([`Candidate::read`]), what it changes compared with the
//! running one ([`Changes`]), and how the outcome is logged and counted.
//!
//! Whether a source or a sink changed is decided on its section of the
//! file, with `${VAR}` substituted, not on the parsed structs: those hide
//! their secrets (a rotated webhook secret must count as a change), and a
//! sink's parsed form shows only what its module chose to show. Sections
//! are compared by a keyed hash, so no secret is kept in another form.

use crate::config::{
    Config, ConfigError, Environment, Node, NodeValue, ProcessEnv, parse_yaml, substitute,
};
use crate::deliver::Templates;
use serde::Serialize;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

/// A config read and checked from the file, ready to replace the running one.
pub struct Candidate {
    pub config: Config,
    pub templates: Arc<Templates>,
    pub sections: Sections,
}

impl Candidate {
    /// Read `path` again (variables from the process environment, `_FILE`
    /// files read again), check it and compile its templates; every problem
    /// is returned, and nothing runs.
    pub fn read(path: &Path) -> Result<Candidate, ConfigError> {
        let text = Config::read_text(path)?;
        let config = Config::parse(&text, path, &ProcessEnv)?;
        let templates = Templates::compile(&config).map_err(|problems| ConfigError {
            file: path.to_owned(),
            problems,
        })?;
        Ok(Candidate {
            sections: Sections::of(&text, &ProcessEnv),
            config,
            templates: Arc::new(templates),
        })
    }
}

/// A keyed hash of each source's and sink's section, by name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sections {
    sources: HashMap<String, u64>,
    sinks: HashMap<String, u64>,
}

impl Sections {
    /// The sections of the config file `path` (the running config's, read
    /// when `run` starts); none when it cannot be read.
    pub fn of_file(path: &Path) -> Sections {
        Config::read_text(path)
            .map(|text| Sections::of(&text, &ProcessEnv))
            .unwrap_or_default()
    }

    fn of(text: &str, env: &dyn Environment) -> Sections {
        let Ok(root) = parse_yaml(text) else {
            return Sections::default();
        };
        Sections {
            sources: named_sections(&root, "sources", env),
            sinks: named_sections(&root, "sinks", env),
        }
    }
}

fn named_sections(root: &Node, key: &str, env: &dyn Environment) -> HashMap<String, u64> {
    let NodeValue::Map(top) = &root.value else {
        return HashMap::new();
    };
    let Some((_, list)) = top.iter().find(|(k, _)| k == key) else {
        return HashMap::new();
    };
    let NodeValue::Seq(items) = &list.value else {
        return HashMap::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let NodeValue::Map(fields) = &item.value else {
                return None;
            };
            let (_, name) = fields.iter().find(|(k, _)| k == "name")?;
            let name = name.value.scalar_text()?;
            let name = substitute(&name, env).unwrap_or(name);
            let mut hasher = hash_key().build_hasher();
            feed(item, env, &mut hasher);
            Some((name, hasher.finish()))
        })
        .collect()
}

/// A section with no hash on either side (unreadable) counts as changed.
fn section_differs(old: &HashMap<String, u64>, new: &HashMap<String, u64>, name: &str) -> bool {
    old.get(name).is_none() || old.get(name) != new.get(name)
}

/// One random key for the life of the process: the hashes of sections
/// that hold secrets mean nothing outside it.
fn hash_key() -> &'static RandomState {
    static KEY: OnceLock<RandomState> = OnceLock::new();
    KEY.get_or_init(RandomState::new)
}

/// A node's value as the config reader sees it: lines ignored, strings
/// substituted, the keys of a mapping in any order.
fn feed(node: &Node, env: &dyn Environment, h: &mut impl Hasher) {
    match &node.value {
        NodeValue::Null => h.write_u8(0),
        NodeValue::Bool(b) => {
            h.write_u8(1);
            h.write_u8(u8::from(*b));
        }
        NodeValue::Int(i) => {
            h.write_u8(2);
            h.write_i64(*i);
        }
        NodeValue::Float(f) => {
            h.write_u8(3);
            h.write_u64(f.to_bits());
        }
        NodeValue::Str(s) => {
            h.write_u8(4);
            let s = substitute(s, env).unwrap_or_else(|_| s.clone());
            h.write_usize(s.len());
            h.write(s.as_bytes());
        }
        NodeValue::Seq(items) => {
            h.write_u8(5);
            h.write_usize(items.len());
            items.iter().for_each(|n| feed(n, env, h));
        }
        NodeValue::Map(fields) => {
            h.write_u8(6);
            h.write_usize(fields.len());
            let mut sorted: Vec<&(String, Node)> = fields.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            for (key, value) in sorted {
                h.write_usize(key.len());
                h.write(key.as_bytes());
                feed(value, env, h);
            }
        }
    }
}

/// What a reload changed (the API's answer, and the log's).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Changes {
    pub sources: SetChanges,
    pub sinks: SetChanges,
    pub routes_changed: bool,
    /// Top-level keys that changed but take effect only after a restart;
    /// the rest of the reload applied.
    pub needs_restart: Vec<&'static str>,
}

/// Names added, removed and changed, each in config order.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SetChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl SetChanges {
    fn of<'a>(
        old: impl Iterator<Item = &'a str> + Clone,
        new: impl Iterator<Item = &'a str> + Clone,
        differs: impl Fn(&str) -> bool,
    ) -> SetChanges {
        let had = |name: &str| old.clone().any(|o| o == name);
        let has = |name: &str| new.clone().any(|n| n == name);
        SetChanges {
            added: new.clone().filter(|n| !had(n)).map(str::to_owned).collect(),
            removed: old.clone().filter(|o| !has(o)).map(str::to_owned).collect(),
            changed: new
                .filter(|n| had(n) && differs(n))
                .map(str::to_owned)
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

impl Changes {
    /// What replacing `old` (with its file's `old_sections`) by `new` changes.
    pub fn between(old: &Config, old_sections: &Sections, new: &Candidate) -> Changes {
        let sources = SetChanges::of(
            old.sources.iter().map(|s| s.name.as_str()),
            new.config.sources.iter().map(|s| s.name.as_str()),
            |name| section_differs(&old_sections.sources, &new.sections.sources, name),
        );
        let sinks = SetChanges::of(
            old.sinks.iter().map(|s| s.name.as_str()),
            new.config.sinks.iter().map(|s| s.name.as_str()),
            |name| {
                section_differs(&old_sections.sinks, &new.sections.sinks, name)
                    // The top-level `delivery:` is every sink's default.
                    || old.sink(name).map(|s| s.retry) != new.config.sink(name).map(|s| s.retry)
            },
        );
        let old_sinks: Vec<&str> = old.sinks.iter().map(|s| s.name.as_str()).collect();
        let new_sinks: Vec<&str> = new.config.sinks.iter().map(|s| s.name.as_str()).collect();
        // Without routes every sink gets everything: the sink list is the table.
        let routes_changed = format!("{:?}", old.routes) != format!("{:?}", new.config.routes)
            || (new.config.routes.is_empty() && old_sinks != new_sinks);
        let new = &new.config;
        let mut needs_restart = Vec::new();
        if old.state_dir != new.state_dir {
            needs_restart.push("state_dir");
        }
        if old.store != new.store {
            needs_restart.push("store");
        }
        if old.listen != new.listen {
            needs_restart.push("listen");
        }
        if old.api_token != new.api_token {
            needs_restart.push("api_token");
        }
        if old.log.format != new.log.format || old.log.level != new.log.level {
            needs_restart.push("log");
        }
        if old.shutdown_grace != new.shutdown_grace {
            needs_restart.push("shutdown_grace");
        }
        Changes {
            sources,
            sinks,
            routes_changed,
            needs_restart,
        }
    }

    /// `old` with what cannot change without a restart kept as it is.
    pub fn keep_fixed(old: &Config, mut new: Config) -> Config {
        new.state_dir = old.state_dir.clone();
        new.listen = old.listen;
        new.store = old.store.clone();
        new.api_token = old.api_token.clone();
        new.log = old.log.clone();
        new.shutdown_grace = old.shutdown_grace;
        new
    }
}

/// Where a reload was asked from, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Signal,
    Api,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Origin::Signal => "SIGHUP",
            Origin::Api => "API",
        }
    }
}

pub type ReloadOutcome = Result<Changes, ConfigError>;

/// One reload asked for; the outcome goes back on `reply`.
pub struct ReloadRequest {
    pub origin: Origin,
    pub reply: Option<oneshot::Sender<ReloadOutcome>>,
}

/// Reloads asked for and not yet begun; a signal past these is dropped
/// (the reloads waiting read the same file anyway).
const WAITING: usize = 16;

/// Asks the running orderwatch to reload; cheap to clone.
#[derive(Clone)]
pub struct ReloadHandle {
    tx: mpsc::Sender<ReloadRequest>,
}

impl ReloadHandle {
    pub fn new() -> (ReloadHandle, mpsc::Receiver<ReloadRequest>) {
        // Requests wait their turn: one reload at a time.
        let (tx, rx) = mpsc::channel(WAITING);
        (ReloadHandle { tx }, rx)
    }

    /// Reload and wait for the outcome; `None` when orderwatch is stopping.
    pub async fn reload(&self, origin: Origin) -> Option<ReloadOutcome> {
        let (reply, outcome) = oneshot::channel();
        let request = ReloadRequest {
            origin,
            reply: Some(reply),
        };
        self.tx.send(request).await.ok()?;
        outcome.await.ok()
    }

    /// Ask for a reload without waiting (SIGHUP: the log says how it went).
    pub fn request(&self, origin: Origin) {
        let request = ReloadRequest {
            origin,
            reply: None,
        };
        if self.tx.try_send(request).is_err() {
            warn!("reload not started: {WAITING} reloads are already waiting");
        }
    }
}

/// Log and count how a reload went.
pub fn report(origin: Origin, file: &Path, outcome: &ReloadOutcome) {
    let label = if outcome.is_ok() { "ok" } else { "error" };
    metrics::counter!(crate::metrics::CONFIG_RELOADS_TOTAL, "outcome" => label).increment(1);
    match outcome {
        Ok(changes) => {
            let list = |s: &[String]| s.join(", ");
            info!(
                from = origin.as_str(),
                file = %file.display(),
                sources_added = %list(&changes.sources.added),
                sources_removed = %list(&changes.sources.removed),
                sources_changed = %list(&changes.sources.changed),
                sinks_added = %list(&changes.sinks.added),
                sinks_removed = %list(&changes.sinks.removed),
                sinks_changed = %list(&changes.sinks.changed),
                routes_changed = changes.routes_changed,
                "config reloaded"
            );
            if !changes.needs_restart.is_empty() {
                warn!(
                    keys = %changes.needs_restart.join(", "),
                    "config reloaded, but these keys changed and take effect only after a restart: {}",
                    changes.needs_restart.join(", ")
                );
            }
        }
        Err(e) => error!(
            from = origin.as_str(),
            "config not reloaded, nothing changed: {}",
            e.to_string().trim_end()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(text: &str, env: &HashMap<String, String>) -> Candidate {
        let config = Config::parse(text, Path::new("t.yaml"), env).unwrap();
        Candidate {
            templates: Arc::new(Templates::compile(&config).unwrap()),
            sections: Sections::of(text, env),
            config,
        }
    }

    fn yaml(sources: &[(&str, &str)], sinks: &[(&str, &str)], rest: &str) -> String {
        let mut out = String::from("sources:\n");
        for (name, interval) in sources {
            out.push_str(&format!(
                "  - {{name: {name}, api: order-tracking, base_url: 'http://127.0.0.1:1', client_id: a, client_secret: '${{SECRET}}', api_key: c, interval: {interval}}}\n"
            ));
        }
        out.push_str("sinks:\n");
        for (name, url) in sinks {
            out.push_str(&format!(
                "  - {{name: {name}, type: webhook, url: '{url}'}}\n"
            ));
        }
        out + rest
    }

    fn env(secret: &str) -> HashMap<String, String> {
        HashMap::from([("SECRET".to_owned(), secret.to_owned())])
    }

    #[test]
    fn names_what_was_added_removed_and_changed() {
        let e = env("s3cret-one");
        let old = candidate(
            &yaml(
                &[("a", "1m"), ("b", "1m")],
                &[("x", "http://127.0.0.1:2/"), ("y", "http://127.0.0.1:3/")],
                "",
            ),
            &e,
        );
        let new = candidate(
            &yaml(
                &[("a", "1m"), ("c", "1m"), ("b", "2m")],
                &[("y", "http://127.0.0.1:3/"), ("z", "http://127.0.0.1:4/")],
                "listen: 127.0.0.1:0\n",
            ),
            &e,
        );
        let changes = Changes::between(&old.config, &old.sections, &new);
        assert_eq!(changes.sources.added, ["c"]);
        assert!(changes.sources.removed.is_empty());
        assert_eq!(changes.sources.changed, ["b"]);
        assert_eq!(changes.sinks.added, ["z"]);
        assert_eq!(changes.sinks.removed, ["x"]);
        assert!(changes.sinks.changed.is_empty());
        assert!(
            changes.routes_changed,
            "the sinks of a route-less table changed"
        );
        assert_eq!(changes.needs_restart, ["listen"]);
    }

    #[test]
    fn the_same_file_changes_nothing_and_a_new_secret_is_a_change() {
        let text = yaml(&[("a", "1m")], &[("x", "http://127.0.0.1:2/")], "");
        let old = candidate(&text, &env("s3cret-one"));
        let same = candidate(&format!("# a comment first\n{text}"), &env("s3cret-one"));
        let changes = Changes::between(&old.config, &old.sections, &same);
        assert!(changes.sources.is_empty() && changes.sinks.is_empty());
        assert!(!changes.routes_changed && changes.needs_restart.is_empty());

        let rotated = candidate(&text, &env("s3cret-two"));
        let changes = Changes::between(&old.config, &old.sections, &rotated);
        assert_eq!(changes.sources.changed, ["a"]);
    }

    #[test]
    fn a_new_default_retry_policy_changes_every_sink_that_uses_it() {
        let text = yaml(&[("a", "1m")], &[("x", "http://127.0.0.1:2/")], "");
        let old = candidate(&text, &env("s"));
        let new = candidate(&format!("{text}delivery: {{max_attempts: 3}}\n"), &env("s"));
        let changes = Changes::between(&old.config, &old.sections, &new);
        assert_eq!(changes.sinks.changed, ["x"]);
        assert!(!changes.routes_changed);
    }
}
