//! `${VAR}` and `${VAR:-default}` substitution, with the `VAR_FILE` fallback.
//!
//! Substitution happens on every string of the document before decoding, so
//! every key accepts it. Where `VAR` is unset but `VAR_FILE` names a file, the
//! file's contents (trailing newline trimmed) are used: the Docker-secrets
//! convention. `$$` stands for a literal `$`.
//!
//! A secret file is read only if it is a regular file of at most
//! [`MAX_SECRET_FILE`] bytes: a FIFO, a device such as `/dev/zero` or a
//! directory is refused without being opened, so a mistaken path can neither
//! hang the start nor fill the memory.

use std::collections::HashMap;
use std::io::Read;

/// The largest `VAR_FILE` accepted; secrets are short.
pub const MAX_SECRET_FILE: u64 = 64 * 1024;

/// Where variables come from: the process environment, or a map in tests.
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
    fn read_file(&self, path: &str) -> std::io::Result<String> {
        read_secret_file(std::path::Path::new(path))
    }
}

/// A regular file of at most [`MAX_SECRET_FILE`] bytes, as UTF-8 text.
pub fn read_secret_file(path: &std::path::Path) -> std::io::Result<String> {
    // The type is checked before opening: opening a FIFO blocks until a
    // writer comes, and a device never ends.
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "it is not a regular file (a FIFO, device or directory)",
        ));
    }
    let too_large = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("it is larger than {} KiB", MAX_SECRET_FILE / 1024),
        )
    };
    if meta.len() > MAX_SECRET_FILE {
        return Err(too_large());
    }
    // The file may have grown since: read at most one byte past the bound.
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(too_large());
    }
    String::from_utf8(bytes)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "it is not UTF-8 text"))
}

/// The real process environment.
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Environment for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Replace every `${...}` in `text`. Errors name the variable, never a value.
pub(crate) fn substitute(text: &str, env: &dyn Environment) -> Result<String, String> {
    if !text.contains('$') {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner_start) = after.strip_prefix('{') {
            let Some(end) = inner_start.find('}') else {
                return Err("`${` without a closing `}`".to_owned());
            };
            let expr = &inner_start[..end];
            out.push_str(&resolve(expr, env)?);
            rest = &inner_start[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn resolve(expr: &str, env: &dyn Environment) -> Result<String, String> {
    let (name, default) = match expr.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (expr, None),
    };
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !valid {
        return Err(format!("`${{{name}}}` is not a valid variable name"));
    }
    if let Some(value) = env.var(name) {
        return Ok(value);
    }
    let file_var = format!("{name}_FILE");
    if let Some(path) = env.var(&file_var) {
        return match env.read_file(&path) {
            Ok(contents) => Ok(contents
                .strip_suffix("\r\n")
                .or_else(|| contents.strip_suffix('\n'))
                .unwrap_or(&contents)
                .to_owned()),
            Err(e) => Err(format!(
                "{file_var} names the file {path}, which cannot be read: {e}"
            )),
        };
    }
    match default {
        Some(default) => Ok(default.to_owned()),
        None => Err(format!(
            "environment variable {name} is not set (nor {file_var}), and `${{{name}}}` has no default"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn plain_text_is_untouched() {
        assert_eq!(substitute("hello", &env(&[])).unwrap(), "hello");
    }

    #[test]
    fn variables_and_defaults() {
        let e = env(&[("A", "1")]);
        assert_eq!(substitute("x${A}y", &e).unwrap(), "x1y");
        assert_eq!(substitute("${B:-two}", &e).unwrap(), "two");
        assert_eq!(substitute("${B:-}", &e).unwrap(), "");
        assert_eq!(substitute("$$5 and $x", &e).unwrap(), "$5 and $x");
    }

    #[test]
    fn unset_variable_is_named() {
        let err = substitute("${MISSING}", &env(&[])).unwrap_err();
        assert!(err.contains("MISSING"), "{err}");
    }

    #[test]
    fn file_fallback_trims_one_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\n").unwrap();
        let e = env(&[("PW_FILE", path.to_str().unwrap())]);
        assert_eq!(substitute("${PW}", &e).unwrap(), "s3cret");
    }

    #[test]
    fn unreadable_file_is_an_error_without_contents() {
        let e = env(&[("PW_FILE", "/nonexistent/orderwatch")]);
        let err = substitute("${PW}", &e).unwrap_err();
        assert!(err.contains("PW_FILE"), "{err}");
    }

    #[test]
    fn fifos_devices_and_large_files_are_refused_without_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads the NUL-terminated path it is given.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; MAX_SECRET_FILE as usize + 1]).unwrap();
        let fits = dir.path().join("fits");
        std::fs::write(&fits, vec![b'x'; MAX_SECRET_FILE as usize]).unwrap();
        for (path, why) in [
            (fifo.to_str().unwrap(), "not a regular file"),
            ("/dev/zero", "not a regular file"),
            (big.to_str().unwrap(), "larger than 64 KiB"),
        ] {
            let err = substitute("${PW}", &env(&[("PW_FILE", path)])).unwrap_err();
            assert!(err.contains("PW_FILE") && err.contains(why), "{err}");
        }
        let fitting = substitute("${PW}", &env(&[("PW_FILE", fits.to_str().unwrap())]));
        assert_eq!(fitting.unwrap().len(), MAX_SECRET_FILE as usize);
    }

    #[test]
    fn unclosed_brace_is_an_error() {
        assert!(substitute("${A", &env(&[("A", "1")])).is_err());
    }
}
