//! Human-readable values in the config file: durations (`"10s"`, `"1m30s"`),
//! sizes (`"4KiB"`, `5000`), listen addresses (`":3553"`) and named choices
//! (`"resp" | "tick"`), plus the serde `deserialize_with` adapters for them.
//!
//! The parsers return `Result<_, String>`: the message says what is wrong with
//! the value only. The loader adds the file, line and key around it.

use std::fmt;
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Nanoseconds per duration unit, longest spelling first where one is a prefix
/// of another (`ms` before `m`). Same units as due (Go's `time.ParseDuration`
/// plus `d`).
const DURATION_UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),  // µ MICRO SIGN
    ("\u{3bc}s", 1_000), // μ GREEK SMALL LETTER MU
    ("ms", 1_000_000),
    ("s", NANOS_PER_SEC),
    ("m", 60 * NANOS_PER_SEC),
    ("h", 3_600 * NANOS_PER_SEC),
    ("d", 86_400 * NANOS_PER_SEC),
];

/// Parses a duration: one or more `<number><unit>` terms (`"10s"`, `"1m30s"`,
/// `"1.5s"`) with units `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`, `d`; or a bare
/// `"0"`, the only number that needs no unit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    let bad = |why: &str| format!("invalid duration {text:?}: {why}");
    if s.is_empty() {
        return Err(bad("empty (write \"0s\" for none)"));
    }
    if s.starts_with('-') {
        return Err(bad("must not be negative"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (int, frac, after) = split_number(rest);
        if int.is_empty() && frac.is_empty() {
            return Err(bad("expected a number, e.g. \"10s\""));
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let unit = &after[..unit_len];
        let Some(&(_, scale)) = DURATION_UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(if unit.starts_with(char::is_whitespace) {
                bad("no space allowed between a number and its unit")
            } else if unit.is_empty() {
                bad("missing unit, e.g. \"10s\" (units: ns, us, ms, s, m, h, d)")
            } else {
                bad(&format!(
                    "unknown unit {unit:?} (units: ns, us, ms, s, m, h, d)"
                ))
            });
        };
        let too_long = || bad("too long");
        let whole: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| too_long())?
        };
        // Fraction digits beyond nanosecond precision of a day do not matter;
        // keep 18 so that 10^len stays well inside u128 with the scale applied.
        let frac = &frac[..frac.len().min(18)];
        let frac_nanos = if frac.is_empty() {
            0
        } else {
            let digits: u128 = frac.parse().map_err(|_| too_long())?;
            digits * scale / 10u128.pow(frac.len() as u32)
        };
        total = whole
            .checked_mul(scale)
            .and_then(|t| t.checked_add(frac_nanos))
            .and_then(|t| t.checked_add(total))
            .ok_or_else(too_long)?;
        rest = &after[unit_len..];
    }
    let secs = u64::try_from(total / NANOS_PER_SEC).map_err(|_| bad("too long"))?;
    Ok(Duration::new(secs, (total % NANOS_PER_SEC) as u32))
}

/// Splits `"12.5ms..."` into `("12", "5", "ms...")`.
fn split_number(s: &str) -> (&str, &str, &str) {
    let int_len = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (int, rest) = s.split_at(int_len);
    match rest.strip_prefix('.') {
        Some(after_dot) => {
            let frac_len = after_dot
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after_dot.len());
            (int, &after_dot[..frac_len], &after_dot[frac_len..])
        }
        None => (int, "", rest),
    }
}

/// Bytes per size unit, matched case-insensitively. `K`, `KB` and `KiB` all
/// mean 1024 (as in due's config and most game-server configs): there are no
/// decimal kilobytes here.
const SIZE_UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("b", 1),
    ("k", 1 << 10),
    ("kb", 1 << 10),
    ("kib", 1 << 10),
    ("m", 1 << 20),
    ("mb", 1 << 20),
    ("mib", 1 << 20),
    ("g", 1 << 30),
    ("gb", 1 << 30),
    ("gib", 1 << 30),
    ("t", 1 << 40),
    ("tb", 1 << 40),
    ("tib", 1 << 40),
];

/// Parses a size in bytes: `"5000"`, `"5000B"`, `"4K"`/`"4KB"`/`"4KiB"` (all
/// 1024-based), `"1M"`, `"1G"`, `"1T"`; units are case-insensitive and may be
/// separated from the number by spaces.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let bad = |why: &str| format!("invalid size {text:?}: {why}");
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits == 0 {
        return Err(bad(
            "expected a whole number of bytes, e.g. \"4KiB\" or 5000",
        ));
    }
    let unit = s[digits..].trim_start().to_ascii_lowercase();
    let Some(&(_, scale)) = SIZE_UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(bad(&format!(
            "unknown unit {:?} (units: B, K/KB/KiB, M/MB/MiB, G/GB/GiB, T/TB/TiB)",
            &s[digits..].trim_start()
        )));
    };
    s[..digits]
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| bad("too large"))
}

/// Parses a listen or dial address: `"127.0.0.1:3553"`, `"[::]:3553"`, or
/// due's `":3553"`, which means every IPv4 interface (`0.0.0.0:3553`). Host
/// names are not resolved: the config holds addresses, not names.
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    let s = text.trim();
    let parsed = match s.strip_prefix(':') {
        Some(port) => port
            .parse::<u16>()
            .ok()
            .map(|port| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)),
        None => s.parse().ok(),
    };
    parsed.ok_or_else(|| {
        format!(
            "invalid address {text:?}: expected IP:port, e.g. \":3553\", \"127.0.0.1:3553\" \
             or \"[::]:3553\" (host names are not resolved)"
        )
    })
}

/// Picks the value named `text` from `choices`, or says which names exist.
pub fn parse_choice<T: Copy>(text: &str, choices: &[(&str, T)]) -> Result<T, String> {
    if let Some(&(_, value)) = choices.iter().find(|(name, _)| *name == text) {
        return Ok(value);
    }
    let names: Vec<String> = choices
        .iter()
        .map(|(name, _)| format!("{name:?}"))
        .collect();
    let expected = match names.as_slice() {
        [] => "nothing".to_owned(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    };
    Err(format!("unknown variant {text:?}, expected {expected}"))
}

/// `deserialize_with` for a [`Duration`] written as a string (`"10s"`); the
/// integer `0` is accepted too, since zero needs no unit.
pub fn duration<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as \"10s\", \"500ms\" or \"1m30s\"")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            parse_duration(v).map_err(E::custom)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            match v {
                0 => Ok(Duration::ZERO),
                _ => Err(E::custom(format!(
                    "invalid duration {v}: missing unit, e.g. \"{v}s\" or \"{v}ms\""
                ))),
            }
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
        }
    }
    de.deserialize_any(V)
}

/// [`duration`] for an optional key (with `#[serde(default)]`: absent is `None`).
pub fn opt_duration<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
    duration(de).map(Some)
}

/// [`size`] for an optional key (with `#[serde(default)]`: absent is `None`).
pub fn opt_size<'de, D, T>(de: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    size(de).map(Some)
}

/// `deserialize_with` for a byte count written as an integer or a string
/// (`"4KiB"`), converted into the field's integer type with a range check.
pub fn size<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    struct V<T>(PhantomData<T>);
    impl<T: TryFrom<u64>> Visitor<'_> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a size such as 5000, \"5000B\", \"4KiB\" or \"1MiB\"")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            let bytes = parse_size(v).map_err(E::custom)?;
            T::try_from(bytes)
                .map_err(|_| E::custom(format!("size {v:?} ({bytes} bytes) is too large here")))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            T::try_from(v).map_err(|_| E::custom(format!("size {v} is too large here")))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::custom(format!("invalid size {v}: must not be negative"))),
            }
        }
    }
    de.deserialize_any(V(PhantomData))
}

/// `deserialize_with` for a [`SocketAddr`] in the forms [`parse_addr`] takes.
pub fn addr<'de, D: Deserializer<'de>>(de: D) -> Result<SocketAddr, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = SocketAddr;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an address such as \":3553\" or \"127.0.0.1:3600\"")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<SocketAddr, E> {
            parse_addr(v).map_err(E::custom)
        }
    }
    de.deserialize_str(V)
}

/// Deserializes a string naming one of `choices` (see [`parse_choice`]).
pub fn choice<'de, D, T>(de: D, choices: &[(&str, T)]) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Copy,
{
    let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(de)?;
    parse_choice(&text, choices).map_err(de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn durations() {
        let ok = [
            ("10s", Duration::from_secs(10)),
            ("500ms", ms(500)),
            ("250us", Duration::from_micros(250)),
            ("250µs", Duration::from_micros(250)),
            ("250μs", Duration::from_micros(250)),
            ("100ns", Duration::from_nanos(100)),
            ("1m", Duration::from_secs(60)),
            ("2h", Duration::from_secs(7_200)),
            ("7d", Duration::from_secs(7 * 86_400)),
            ("1m30s", Duration::from_secs(90)),
            ("1h2m3s4ms", Duration::from_millis(3_723_004)),
            ("1.5s", ms(1_500)),
            (".5s", ms(500)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            (" 3s ", Duration::from_secs(3)),
        ];
        for (text, want) in ok {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn bad_durations() {
        let bad = [
            ("", "empty"),
            ("10", "missing unit"),
            ("10x", "unknown unit \"x\""),
            ("10 s", "no space"),
            ("s", "expected a number"),
            ("-1s", "negative"),
            ("1s-", "unknown unit \"s-\""),
            ("99999999999999999999999d", "too long"),
        ];
        for (text, why) in bad {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains(why), "{text:?}: {err}");
            assert!(err.contains(&format!("{text:?}")), "{text:?}: {err}");
        }
    }

    #[test]
    fn sizes() {
        let ok = [
            ("5000", 5000),
            ("5000B", 5000),
            ("5000b", 5000),
            ("4K", 4096),
            ("4KB", 4096),
            ("4KiB", 4096),
            ("4 KiB", 4096),
            ("4kib", 4096),
            ("1M", 1 << 20),
            ("1MB", 1 << 20),
            ("16MiB", 16 << 20),
            ("1G", 1 << 30),
            ("2GiB", 2 << 30),
            ("1T", 1 << 40),
            ("0", 0),
        ];
        for (text, want) in ok {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
        for (text, why) in [
            ("", "whole number"),
            ("KiB", "whole number"),
            ("1.5M", "unknown unit \".5M\""),
            ("4X", "unknown unit \"X\""),
            ("-4K", "whole number"),
            ("99999999999T", "too large"),
        ] {
            let err = parse_size(text).unwrap_err();
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }

    #[test]
    fn addrs() {
        assert_eq!(parse_addr(":3553"), Ok("0.0.0.0:3553".parse().unwrap()));
        assert_eq!(
            parse_addr("127.0.0.1:3553"),
            Ok("127.0.0.1:3553".parse().unwrap())
        );
        assert_eq!(parse_addr("[::]:3553"), Ok("[::]:3553".parse().unwrap()));
        assert_eq!(parse_addr("[::1]:0"), Ok("[::1]:0".parse().unwrap()));
        for bad in ["", ":", ":99999", "3553", "localhost:3553", "1.2.3.4"] {
            let err = parse_addr(bad).unwrap_err();
            assert!(err.contains("expected IP:port"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn choices() {
        let c = [("resp", 1), ("tick", 2)];
        assert_eq!(parse_choice("tick", &c), Ok(2));
        assert_eq!(
            parse_choice("pong", &c).unwrap_err(),
            r#"unknown variant "pong", expected "resp" or "tick""#
        );
        let c = [("a", 1), ("b", 2), ("c", 3)];
        assert_eq!(
            parse_choice("x", &c).unwrap_err(),
            r#"unknown variant "x", expected "a", "b" or "c""#
        );
    }
}
