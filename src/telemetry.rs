//! Logging: `tracing` to stderr, as text or JSON lines; `RUST_LOG` wins over
//! `log.level`. Stdout is kept for command output (`--json`, the console sink).

use crate::config::{LogConfig, LogFormat};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Install the global subscriber once; later calls do nothing.
pub fn init(log: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Logging before a config is read (config errors, `simulate`).
pub fn init_default() {
    init(&LogConfig {
        format: LogFormat::Text,
        level: "info".to_owned(),
    });
}
