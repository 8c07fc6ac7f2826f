//! Logging: `tracing` to stderr, as text or JSON lines; `RUST_LOG` wins over
//! `log.level`. Stdout is kept for command output (`--json`, the console sink).
//!
//! One event is one line, whatever it quotes: an order id or an answer from
//! outside may hold CR, LF or TAB, and written as they are they would end the
//! line and forge the next one. Control characters inside a line are written
//! escaped (`\r`, `\n`, `\t`, `\x1f`); JSON lines have them escaped already.

use crate::config::{LogConfig, LogFormat};
use std::io::{self, IsTerminal, Write};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Install the global subscriber once; later calls do nothing.
pub fn init(log: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(OneLineStderr { ansi })
        .with_ansi(ansi)
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

/// Stderr, one line per event. tracing's formatter hands each event over in
/// one write, ending with its newline.
struct OneLineStderr {
    /// Colours on a terminal are escape sequences of our own: kept.
    ansi: bool,
}

impl<'a> MakeWriter<'a> for OneLineStderr {
    type Writer = OneLineWriter;

    fn make_writer(&'a self) -> OneLineWriter {
        OneLineWriter { ansi: self.ansi }
    }
}

struct OneLineWriter {
    ansi: bool,
}

impl Write for OneLineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut stderr = io::stderr().lock();
        match escape_controls(buf, self.ansi) {
            Some(escaped) => stderr.write_all(&escaped)?,
            None => stderr.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// `line` with every control character but its final newline escaped, or
/// `None` when there is none (most lines).
fn escape_controls(line: &[u8], keep_esc: bool) -> Option<Vec<u8>> {
    let (body, newline) = match line.strip_suffix(b"\n") {
        Some(body) => (body, true),
        None => (line, false),
    };
    let is_escaped = |b: u8| (b < 0x20 || b == 0x7f) && !(keep_esc && b == 0x1b);
    if !body.iter().any(|b| is_escaped(*b)) {
        return None;
    }
    let mut out = Vec::with_capacity(line.len() + 16);
    for &b in body {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b if is_escaped(b) => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
            b => out.push(b),
        }
    }
    if newline {
        out.push(b'\n');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(line: &str, keep_esc: bool) -> String {
        escape_controls(line.as_bytes(), keep_esc)
            .map(|v| String::from_utf8(v).unwrap())
            .unwrap_or_else(|| line.to_owned())
    }

    #[test]
    fn a_line_stays_one_line() {
        assert_eq!(
            escaped("WARN order_id=a\r\nb x\ty\n", false),
            "WARN order_id=a\\r\\nb x\\ty\n"
        );
        assert_eq!(escaped("bell\u{7}\u{7f}\n", false), "bell\\x07\\x7f\n");
        assert_eq!(escaped("no newline\nat end", false), "no newline\\nat end");
    }

    #[test]
    fn plain_lines_and_our_colours_pass_as_they_are() {
        assert_eq!(escape_controls(b"INFO poll cycle done\n", false), None);
        assert_eq!(escape_controls(b"\x1b[32mINFO\x1b[0m done\n", true), None);
        assert_eq!(escaped("\u{1b}[2J\n", false), "\\x1b[2J\n");
        assert_eq!(escaped("é ü 日本\n", false), "é ü 日本\n");
    }
}
