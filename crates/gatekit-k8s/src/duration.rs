//! Gateway API duration strings (GEP-2257): `1h`, `5s`, `100ms`, `1m30s`.
//!
//! The grammar is `^([0-9]{1,5}(h|m|s|ms)){1,4}$`: up to four number+unit pairs, each
//! number at most five digits. gatekit parses these strings itself (rather than through
//! `gateway_api::Duration`) so every error says which part of the string is wrong.

pub use crate::error::DurationError;

use std::time::Duration;

/// Parses a Gateway API duration string.
///
/// # Errors
///
/// When `s` does not follow the GEP-2257 grammar: empty, a number with more than five
/// digits, a missing or unknown unit (only `h`, `m`, `s`, `ms`), or more than four parts.
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    if s.is_empty() {
        return Err(DurationError::new(s, "empty"));
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut parts = 0;
    let mut total = Duration::ZERO;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &s[start..i];
        if digits.is_empty() {
            return Err(DurationError::new(s, "expected a number"));
        }
        if digits.len() > 5 {
            return Err(DurationError::new(s, "a number has more than 5 digits"));
        }
        let n: u64 = digits
            .parse()
            .map_err(|_| DurationError::new(s, "expected a number"))?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let part = match &s[unit_start..i] {
            "h" => Duration::from_secs(n * 3600),
            "m" => Duration::from_secs(n * 60),
            "s" => Duration::from_secs(n),
            "ms" => Duration::from_millis(n),
            "" => return Err(DurationError::new(s, "a number has no unit")),
            _ => return Err(DurationError::new(s, "unknown unit (use h, m, s or ms)")),
        };
        total += part;
        parts += 1;
        if parts > 4 {
            return Err(DurationError::new(s, "more than 4 parts"));
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_durations() {
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1h2m3s4ms"), Ok(Duration::from_millis(3_723_004)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_invalid_durations_with_reason() {
        for (input, reason) in [
            ("", "empty"),
            ("5", "no unit"),
            ("s", "expected a number"),
            ("5d", "unknown unit"),
            ("123456s", "more than 5 digits"),
            ("1h1m1s1ms1s", "more than 4 parts"),
            ("1.5s", "no unit"),
            ("-1s", "expected a number"),
        ] {
            let err = parse(input).unwrap_err();
            assert!(err.to_string().contains(reason), "{input}: {err}");
            assert_eq!(err.input(), input);
        }
    }
}
