//! Durations as Spring Boot reads them for resilience4j: a number of milliseconds, a number
//! with a unit (`500ms`, `30s`), or an ISO-8601 duration (`PT30S`).

use std::time::Duration;

use super::tree::Value;

/// What a duration setting accepts, for error messages.
pub(crate) const ALLOWED: &str = "a duration: whole milliseconds (`30000`), a whole number with \
     a unit of ns, us, ms, s, m, h or d (`30s`), or ISO-8601 (`PT30S`)";

/// The duration `value` stands for; `None` if it is not a duration (or a negative one).
pub(crate) fn parse(value: &Value) -> Option<Duration> {
    match value {
        Value::Integer(ms) => u64::try_from(*ms).ok().map(Duration::from_millis),
        Value::Text(text) => parse_text(text.trim()),
        _ => None,
    }
}

fn parse_text(text: &str) -> Option<Duration> {
    if text.starts_with(['P', 'p']) {
        return parse_iso(&text[1..]);
    }
    let text = text.strip_prefix('+').unwrap_or(text);
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let amount: u64 = digits.parse().ok()?;
    let nanos_per_unit: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "ms" => 1_000_000,
        "ns" => 1,
        "us" => 1_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3_600 * 1_000_000_000,
        "d" => 86_400 * 1_000_000_000,
        _ => return None,
    };
    let nanos = u128::from(amount) * u128::from(nanos_per_unit);
    duration_of_nanos(nanos)
}

/// `[nD][T[nH][nM][n[.f]S]]`, after the `P`, as `java.time.Duration` reads it.
fn parse_iso(text: &str) -> Option<Duration> {
    let upper = text.to_ascii_uppercase();
    let (date, time) = match upper.split_once('T') {
        Some((date, time)) if !time.is_empty() => (date, Some(time)),
        Some(_) => return None,
        None => (upper.as_str(), None),
    };
    let mut nanos: u128 = 0;
    let mut any = false;
    if !date.is_empty() {
        let days: u128 = date.strip_suffix('D')?.parse().ok()?;
        nanos += days * 86_400 * 1_000_000_000;
        any = true;
    }
    if let Some(mut rest) = time {
        for (unit, scale) in [('H', 3_600u128), ('M', 60)] {
            if let Some((n, after)) = rest.split_once(unit) {
                if n.contains(['H', 'M', 'S']) {
                    return None;
                }
                nanos += n.parse::<u128>().ok()? * scale * 1_000_000_000;
                rest = after;
                any = true;
            }
        }
        if let Some(seconds) = rest.strip_suffix('S') {
            let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, ""));
            if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            nanos += whole.parse::<u128>().ok()? * 1_000_000_000;
            if !fraction.is_empty() {
                nanos += format!("{fraction:0<9}").parse::<u128>().ok()?;
            }
            any = true;
        } else if !rest.is_empty() {
            return None;
        }
    }
    if any { duration_of_nanos(nanos) } else { None }
}

fn duration_of_nanos(nanos: u128) -> Option<Duration> {
    let seconds = u64::try_from(nanos / 1_000_000_000).ok()?;
    // The remainder is below 10^9: it fits.
    let rest = u32::try_from(nanos % 1_000_000_000).ok()?;
    Some(Duration::new(seconds, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Option<Duration> {
        parse(&Value::Text(s.into()))
    }

    #[test]
    fn spring_boot_forms_are_read() {
        assert_eq!(
            parse(&Value::Integer(30_000)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(text("30000"), Some(Duration::from_secs(30)));
        assert_eq!(text("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(text("30s"), Some(Duration::from_secs(30)));
        assert_eq!(text("2m"), Some(Duration::from_secs(120)));
        assert_eq!(text("1h"), Some(Duration::from_secs(3_600)));
        assert_eq!(text("1d"), Some(Duration::from_secs(86_400)));
        assert_eq!(text("10us"), Some(Duration::from_micros(10)));
        assert_eq!(text("7ns"), Some(Duration::from_nanos(7)));
        assert_eq!(text("5S"), Some(Duration::from_secs(5)));
        assert_eq!(text("PT30S"), Some(Duration::from_secs(30)));
        assert_eq!(text("pt1m30.25s"), Some(Duration::from_millis(90_250)));
        assert_eq!(text("P1DT2H"), Some(Duration::from_secs(93_600)));
        assert_eq!(text("PT0.5S"), Some(Duration::from_millis(500)));
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "-5s",
            "1.5s",
            "30 sec",
            "s",
            "P",
            "PT",
            "PT5",
            "P1H",
            "PT1S2M",
            "PT1.1234567891S",
            "thirty",
        ] {
            assert_eq!(text(bad), None, "{bad:?}");
        }
        assert_eq!(parse(&Value::Integer(-1)), None);
        assert_eq!(parse(&Value::Float(1.5)), None);
        assert_eq!(parse(&Value::Bool(true)), None);
    }
}
