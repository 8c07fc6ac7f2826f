//! `${VAR}` and `${VAR:-default}` substitution, with the `VAR_FILE` fallback.
//!
//! Substitution happens on every string of the document before decoding, so
//! every key accepts it. Where `VAR` is unset but `VAR_FILE` names a file, the
//! file's contents (trailing newline trimmed) are used: the Docker-secrets
//! convention. `$$` stands for a literal `$`.

use std::collections::HashMap;

/// Where variables come from: the process environment, or a map in tests.
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
    fn read_file(&self, path: &str) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
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
    fn unclosed_brace_is_an_error() {
        assert!(substitute("${A", &env(&[("A", "1")])).is_err());
    }
}
