//! An order's id, read from the JSON text of the value at `id_field`.
//!
//! A string is the id as it is (it must not be empty). A number is read from
//! its text, not through `f64`/`u64`: `12345678901234567890123` and
//! `12345678901234567890124` are two orders, not one rounded
//! `1.2345678901234568e22`. The same number written two ways (`100`,
//! `100.0`, `1e2`) is one order: its id is the number's canonical decimal
//! text, so Orange rendering the id differently from one cycle to the next
//! never reads as a removal plus a creation. Anything else (`null`, `true`,
//! an object) is no usable id.
//!
//! Chosen over serde_json's `arbitrary_precision` feature, which would change
//! how every number of every document is parsed and compared, in every crate
//! of the build.

use serde_json::value::RawValue;

/// Past this many digits a number's id is written `<digits>e<exponent>`
/// rather than spelled out: `1e1000000` must not become a megabyte of zeros.
const MAX_SPELLED_DIGITS: usize = 64;

/// The id at this value, or `None` when it is not a usable id.
pub(crate) fn id_text(value: &RawValue) -> Option<String> {
    let text = value.get().trim();
    match text.as_bytes().first()? {
        b'"' => serde_json::from_str::<String>(text)
            .ok()
            .filter(|s| !s.is_empty()),
        b'-' | b'0'..=b'9' => canonical_number(text),
        _ => None,
    }
}

/// The canonical decimal text of a JSON number: no leading zeros, no
/// trailing fractional zeros, no exponent unless it is very large or small.
fn canonical_number(text: &str) -> Option<String> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], unsigned[i + 1..].parse::<i64>().ok()?),
        None => (unsigned, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    // value = digits × 10^scale
    let all_digits = format!("{int}{frac}");
    let significant = all_digits.trim_start_matches('0');
    if significant.is_empty() {
        return Some("0".to_owned());
    }
    let digits = significant.trim_end_matches('0');
    let scale =
        i128::from(exponent) - frac.len() as i128 + (significant.len() - digits.len()) as i128;
    let sign = if negative { "-" } else { "" };
    let len = digits.len() as i128;
    let spelled = if scale >= 0 {
        (len + scale <= MAX_SPELLED_DIGITS as i128)
            .then(|| format!("{sign}{digits}{}", "0".repeat(scale as usize)))
    } else {
        // Digits before the decimal point.
        let point = len + scale;
        if point > 0 {
            let (whole, fraction) = digits.split_at(point as usize);
            Some(format!("{sign}{whole}.{fraction}"))
        } else {
            (-point <= MAX_SPELLED_DIGITS as i128)
                .then(|| format!("{sign}0.{}{digits}", "0".repeat((-point) as usize)))
        }
    };
    Some(spelled.unwrap_or_else(|| format!("{sign}{digits}e{scale}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(json: &str) -> Option<String> {
        id_text(&RawValue::from_string(json.to_owned()).unwrap())
    }

    #[test]
    fn strings_are_ids_as_they_are() {
        assert_eq!(id(r#""100042""#).as_deref(), Some("100042"));
        assert_eq!(id(r#""a\r\nb""#).as_deref(), Some("a\r\nb"));
        assert_eq!(id(r#"" 7 ""#).as_deref(), Some(" 7 "));
        assert_eq!(id(r#""""#), None);
    }

    #[test]
    fn other_values_are_no_id() {
        for json in ["null", "true", "false", "{}", "[1]", r#"{"id":1}"#] {
            assert_eq!(id(json), None, "{json}");
        }
    }

    #[test]
    fn numbers_keep_every_digit() {
        assert_eq!(
            id("12345678901234567890123").as_deref(),
            Some("12345678901234567890123")
        );
        assert_ne!(id("12345678901234567890123"), id("12345678901234567890124"));
        assert_eq!(
            id("12345678901234567891").as_deref(),
            Some("12345678901234567891")
        );
        assert_eq!(id("-42").as_deref(), Some("-42"));
        assert_eq!(id("0.1").as_deref(), Some("0.1"));
        assert_eq!(id("-0.0012").as_deref(), Some("-0.0012"));
        assert_eq!(id("100.5").as_deref(), Some("100.5"));
    }

    #[test]
    fn one_number_written_two_ways_is_one_id() {
        for json in [
            "100", "100.0", "100.000", "1e2", "1E+2", "10e1", "1000e-1", "0.1e3",
        ] {
            assert_eq!(id(json).as_deref(), Some("100"), "{json}");
        }
        for json in ["0", "-0", "0.0", "0e10"] {
            assert_eq!(id(json).as_deref(), Some("0"), "{json}");
        }
        assert_eq!(id("1.50").as_deref(), Some("1.5"));
    }

    #[test]
    fn huge_exponents_stay_short() {
        assert_eq!(id("1e1000000").as_deref(), Some("1e1000000"));
        assert_eq!(id("25e-1000000").as_deref(), Some("25e-1000000"));
        assert_eq!(id("1e64").as_deref(), Some("1e64"));
        assert_eq!(id("1e63").map(|s| s.len()), Some(64));
        assert_eq!(id("1e99999999999999999999"), None);
    }
}
