//! Whether an `Accept` header lets the answer be `application/json`. Pure.

/// True when some media range in `accept` (the values of every `Accept`
/// header, comma lists allowed) is `application/json`, `application/*` or
/// `*/*` with a non-zero quality. No header at all is false: Orange answers
/// 406 without `Accept: application/json`.
pub(crate) fn allows_json<'a>(accept: impl IntoIterator<Item = &'a str>) -> bool {
    accept
        .into_iter()
        .flat_map(|header| header.split(','))
        .any(range_allows_json)
}

fn range_allows_json(range: &str) -> bool {
    let mut parts = range.split(';');
    let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    if !matches!(media.as_str(), "application/json" | "application/*" | "*/*") {
        return false;
    }
    // `q=0` means "not this"; a quality that does not parse is ignored, as
    // lenient servers do.
    !parts.any(|param| {
        let mut kv = param.splitn(2, '=');
        let name = kv.next().unwrap_or("").trim();
        let value = kv.next().unwrap_or("").trim();
        name.eq_ignore_ascii_case("q") && value.parse::<f32>().is_ok_and(|q| q <= 0.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_json_and_wildcards() {
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/*",
            "*/*",
            "text/html, application/json;q=0.5",
            "text/html,*/*;q=0.1",
        ] {
            assert!(allows_json([ok]), "{ok}");
        }
        assert!(allows_json(["text/plain", "application/json"]));
    }

    #[test]
    fn refuses_others() {
        for bad in [
            "text/html",
            "application/xml",
            "application/json;q=0",
            "",
            "application/jsonx",
        ] {
            assert!(!allows_json([bad]), "{bad}");
        }
        assert!(!allows_json([]));
    }
}
