//! Durations as written in tunnels.yaml and on the watchdog's command line:
//! `500ms`, `15s`, `5m`, `1h`. Shared by the config and the watchdog.

use std::time::Duration;

/// The longest duration tunnels.yaml and tunnel-watchdog accept: 2,147,483 s (24 days
/// 20 h). ssh keeps `ConnectTimeout` as milliseconds in a C `int` (2^31 − 1 ms), and the
/// watchdog's `poll` takes the same; below it every value derived from durations
/// (`WatchdogSec=`, `TimeoutStartSec=`, `EXTEND_TIMEOUT_USEC`, `Instant` arithmetic) fits
/// with room to spare, so nothing that passes `check` can overflow later.
pub const MAX_DURATION: Duration = Duration::from_secs(2_147_483);

/// The largest count (`keepalive.count`, `probe.failures`) either side accepts: with
/// [`MAX_DURATION`] it keeps `interval × failures` far inside systemd's u64 microseconds.
pub const MAX_COUNT: u32 = 1000;

/// [`parse_duration`], refusing more than [`MAX_DURATION`].
pub fn parse_bounded(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d > MAX_DURATION {
        return Err(too_long(text.trim()));
    }
    Ok(d)
}

/// Why `text` (a duration over [`MAX_DURATION`]) is refused, and the fix.
pub fn too_long(text: &str) -> String {
    format!(
        "`{text}` is longer than 2147483s (about 24 days), the most tunnelctl accepts: ssh and \
         the watchdog count it in milliseconds in a 32-bit number"
    )
}

/// Parses `500ms`, `15s`, `5m`, `1h` (an integer and one unit; no unit means seconds is
/// deliberately refused, because `15` could as well mean minutes to a reader).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| {
        format!("`{text}` has no unit; write it as `{text}s`, `{text}m` or `{text}ms`")
    })?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(format!(
            "`{text}` is not a duration; write a whole number and a unit: `500ms`, `15s`, `5m`, `1h`"
        ));
    }
    let value: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is too large to be a duration"))?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => {
            return Err(format!(
                "`{text}` has an unknown unit `{unit}`; use ms, s, m or h (for example `15s`)"
            ));
        }
    };
    value
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{text}` is too large to be a duration"))
}

/// The shortest exact spelling of a duration in the same syntax (`90s` stays `90s`,
/// `120s` becomes `2m`), so a rendered file reads like the config that produced it.
pub fn format_duration(duration: Duration) -> String {
    // Seconds and milliseconds as u64, not `as_millis`' u128: the watchdog links no
    // 128-bit formatting. `{secs}{ms:03}` is the decimal of secs × 1000 + ms.
    let (secs, ms) = (duration.as_secs(), duration.subsec_millis());
    if ms != 0 {
        return if secs == 0 {
            format!("{ms}ms")
        } else {
            format!("{secs}{ms:03}ms")
        };
    }
    if secs == 0 {
        "0s".to_string()
    } else if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// Human form for status lines: `3h12m`, `40s`, `12ms`.
pub fn format_human(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs == 0 {
        return format!("{}ms", duration.subsec_millis());
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s:02}s"),
        _ => format!("{h}h{m:02}m"),
    }
}

/// Whole seconds, rounded up: the unit of ssh's time options and of init systems' timers.
pub fn ceil_secs(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn refuses_what_a_reader_could_misread() {
        for bad in [
            "15",
            "s",
            "",
            "1.5s",
            "-1s",
            "5 min",
            "5M",
            "99999999999999999999s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(parse_duration("15").unwrap_err().contains("`15s`"));
    }

    #[test]
    fn bounded_stops_at_the_limit() {
        assert_eq!(parse_bounded("2147483s"), Ok(MAX_DURATION));
        assert_eq!(parse_bounded("596h"), Ok(Duration::from_secs(596 * 3600)));
        assert!(
            parse_bounded("2147483001ms")
                .unwrap_err()
                .contains("2147483s")
        );
        assert!(parse_bounded("5124095576030h").is_err());
        assert!(parse_bounded("597h").is_err());
    }

    #[test]
    fn formats_round_trip() {
        for text in ["500ms", "15s", "90s", "5m", "1h", "1500ms"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(
            format_human(Duration::from_secs(3 * 3600 + 12 * 60 + 5)),
            "3h12m"
        );
        assert_eq!(format_human(Duration::from_millis(12)), "12ms");
    }
}
