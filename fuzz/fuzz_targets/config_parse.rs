//! `Config::parse` on arbitrary text with an empty environment: it must
//! answer Ok or a list of problems, never panic, hang or blow the stack.

#![no_main]

use libfuzzer_sys::fuzz_target;
use orderwatch::Config;
use std::collections::HashMap;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env: HashMap<String, String> = HashMap::new();
    match Config::parse(text, Path::new("fuzz.yaml"), &env) {
        Ok(config) => {
            // A config that parses has what every later stage relies on.
            assert!(
                !config.sources.is_empty(),
                "a config without sources parsed"
            );
        }
        Err(e) => {
            // Every error renders, and names at least one problem.
            let shown = e.to_string();
            assert!(!shown.is_empty());
            assert!(!e.problems.is_empty());
        }
    }
});
