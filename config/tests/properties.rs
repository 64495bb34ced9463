//! Property tests for the parsers: they never panic, and they accept exactly the
//! documented grammar, checked against a reference model written here independently
//! (from the README's table, not from the parser's code) on arbitrary bytes, on
//! strings built from the grammar's own pieces, and on generated valid values.

use keepalive_config::{
    Config, LogLevel, Mode, UserTimeout, ValueError, Var, count, log_level, mode, seconds,
    user_timeout,
};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------
// The reference model

/// What the model says about a value: refused as empty, refused otherwise (with
/// whether it is well formed, i.e. only out of range), or accepted with a value.
#[derive(Debug, PartialEq, Eq)]
enum Verdict<T> {
    Empty,
    Refused { well_formed: bool },
    Accepted(T),
}

/// Surrounding ASCII white space (space, tab, newline, form feed, carriage return)
/// is ignored; nothing else is.
fn trimmed(raw: &[u8]) -> &[u8] {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\x0c' | b'\r');
    let start = raw.iter().position(|b| !is_space(b)).unwrap_or(raw.len());
    let end = raw
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |e| e + 1);
    &raw[start..end]
}

/// A duration as the README defines it: a plain number of `bare_ms` units, or terms
/// `<digits><unit>` with units strictly decreasing, taken from `units` (name, ms),
/// any case. Returns milliseconds as u128 (no overflow for any realistic input:
/// numbers are capped at 30 digits, beyond which the value is "huge").
fn duration(text: &str, bare_ms: u128, units: &[(&str, u128)]) -> Option<u128> {
    const HUGE: u128 = u128::MAX / 4;
    let number = |digits: &str| {
        let significant = digits.trim_start_matches('0');
        if significant.len() > 30 {
            HUGE
        } else {
            significant.parse::<u128>().unwrap_or(0)
        }
    };
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Some(number(text).saturating_mul(bare_ms));
    }
    let lower = text.to_ascii_lowercase();
    let mut rest = lower.as_str();
    let mut last_rank: Option<usize> = None;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits_end == 0 {
            return None;
        }
        let (digits, after) = rest.split_at(digits_end);
        // The longest unit name that matches ("ms" before "m").
        let (rank, (name, ms)) = units
            .iter()
            .enumerate()
            .filter(|(_, (name, _))| after.starts_with(name))
            .max_by_key(|(_, (name, _))| name.len())?;
        if last_rank.is_some_and(|last| rank <= last) {
            return None;
        }
        last_rank = Some(rank);
        total = total.saturating_add(number(digits).saturating_mul(*ms));
        rest = &after[name.len()..];
    }
    Some(total)
}

/// Units from the largest down: the rank in this list orders them.
const SECOND_UNITS: [(&str, u128); 3] = [("s", 1000), ("m", 60_000), ("h", 3_600_000)];
const MILLI_UNITS: [(&str, u128); 4] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)];

fn reversed(units: &[(&'static str, u128)]) -> Vec<(&'static str, u128)> {
    units.iter().rev().copied().collect()
}

fn model<T>(raw: &[u8], parse: impl FnOnce(&str) -> Option<Result<T, ()>>) -> Verdict<T> {
    let text = trimmed(raw);
    if text.is_empty() {
        return Verdict::Empty;
    }
    // Only ASCII can be valid; anything else is malformed.
    let Ok(text) = std::str::from_utf8(text) else {
        return Verdict::Refused { well_formed: false };
    };
    match parse(text) {
        None => Verdict::Refused { well_formed: false },
        Some(Err(())) => Verdict::Refused { well_formed: true },
        Some(Ok(value)) => Verdict::Accepted(value),
    }
}

fn model_seconds(raw: &[u8]) -> Verdict<u16> {
    model(raw, |text| {
        let ms = duration(text, 1000, &reversed(&SECOND_UNITS))?;
        let secs = ms / 1000;
        Some(if (1..=32767).contains(&secs) {
            Ok(secs as u16)
        } else {
            Err(())
        })
    })
}

fn model_count(raw: &[u8]) -> Verdict<u8> {
    model(raw, |text| {
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n = duration(text, 1, &[])?;
        Some(if (1..=127).contains(&n) {
            Ok(n as u8)
        } else {
            Err(())
        })
    })
}

fn model_user_timeout(raw: &[u8]) -> Verdict<UserTimeout> {
    model(raw, |text| match text.to_ascii_lowercase().as_str() {
        "auto" => Some(Ok(UserTimeout::Auto)),
        "off" => Some(Ok(UserTimeout::Off)),
        _ => {
            let ms = duration(text, 1, &reversed(&MILLI_UNITS))?;
            Some(if (1..=i32::MAX as u128).contains(&ms) {
                Ok(UserTimeout::Millis(ms as u32))
            } else {
                Err(())
            })
        }
    })
}

fn model_keyword<T: Copy>(raw: &[u8], words: &[(&str, T)]) -> Verdict<T> {
    model(raw, |text| {
        let lower = text.to_ascii_lowercase();
        words.iter().find(|(w, _)| *w == lower).map(|&(_, v)| Ok(v))
    })
}

const MODES: [(&str, Mode); 4] = [
    ("on", Mode::On),
    ("off", Mode::Off),
    ("skip", Mode::Skip),
    ("force", Mode::Force),
];
const LEVELS: [(&str, LogLevel); 5] = [
    ("off", LogLevel::Off),
    ("error", LogLevel::Error),
    ("warn", LogLevel::Warn),
    ("info", LogLevel::Info),
    ("debug", LogLevel::Debug),
];

/// The parser agrees with the model: the same value when accepted, Empty exactly
/// when the model says empty, OutOfRange for a well-formed refusal. A malformed value
/// may be reported as out of range when a number in it overflows first.
fn agrees<T: PartialEq + std::fmt::Debug>(
    raw: &[u8],
    parsed: Result<T, ValueError>,
    expected: Verdict<T>,
) {
    match (parsed, expected) {
        (Ok(value), Verdict::Accepted(want)) => assert_eq!(value, want, "value of {raw:?}"),
        (Err(ValueError::Empty), Verdict::Empty) => {}
        (Err(ValueError::OutOfRange), Verdict::Refused { well_formed: true }) => {}
        (
            Err(ValueError::Malformed | ValueError::OutOfRange),
            Verdict::Refused { well_formed: false },
        ) => {}
        (parsed, expected) => panic!(
            "{:?}: parser {parsed:?}, model {expected:?}",
            String::from_utf8_lossy(raw)
        ),
    }
}

fn check_all(raw: &[u8]) {
    agrees(raw, seconds(raw), model_seconds(raw));
    agrees(raw, count(raw), model_count(raw));
    agrees(raw, user_timeout(raw), model_user_timeout(raw));
    agrees(raw, mode(raw), model_keyword(raw, &MODES));
    agrees(raw, log_level(raw), model_keyword(raw, &LEVELS));
}

// ---------------------------------------------------------------------------------
// Generators

/// Strings made of the grammar's own pieces and their near misses, so that most of
/// them come close to valid: digits, units in both cases, keywords, white space,
/// signs, dots, junk letters, non-ASCII.
fn grammar_soup() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        8 => "[0-9]{1,6}",
        2 => "[0-9]{15,25}",
        6 => prop::sample::select(vec!["s", "m", "h", "ms", "S", "M", "H", "MS", "mS"]).prop_map(String::from),
        1 => prop::sample::select(vec!["on", "off", "skip", "force", "auto", "error", "warn", "info", "debug", "OFF", "Auto"]).prop_map(String::from),
        2 => prop::sample::select(vec![" ", "\t", "\n", "\r", "\x0b", "\x0c", "+", "-", ".", "0x", "d", "sec", "é", "\u{a0}"]).prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..6).prop_map(|pieces| pieces.concat().into_bytes())
}

/// A valid duration for KEEPIDLE: (text, seconds). Terms with decreasing units,
/// random case, random leading zeros, random surrounding white space.
fn valid_seconds() -> impl Strategy<Value = (Vec<u8>, u16)> {
    let plain = (1u32..=32767).prop_map(|n| (n.to_string(), n));
    let compound = (
        0u32..=9,
        0u32..=546,
        0u32..=32767,
        any::<[bool; 3]>(),
        any::<[bool; 3]>(),
    )
        .prop_filter_map("in range, one term at least", |(h, m, s, used, upper)| {
            let terms = [(h, "h", 3600), (m, "m", 60), (s, "s", 1)];
            let mut text = String::new();
            let mut total = 0;
            for ((value, unit, factor), (used, upper)) in
                terms.into_iter().zip(used.into_iter().zip(upper))
            {
                if used {
                    text += &value.to_string();
                    text += &if upper {
                        unit.to_ascii_uppercase()
                    } else {
                        unit.to_string()
                    };
                    total += value * factor;
                }
            }
            (!text.is_empty() && (1..=32767).contains(&total)).then_some((text, total))
        });
    (
        prop_oneof![plain, compound],
        "[ \t\n]{0,3}",
        "0{0,3}",
        "[ \t\n]{0,3}",
    )
        .prop_map(|((text, value), before, zeros, after)| {
            (
                format!("{before}{zeros}{text}{after}").into_bytes(),
                value as u16,
            )
        })
}

/// A near miss of a valid duration: one change that the grammar forbids.
fn near_miss_seconds() -> impl Strategy<Value = Vec<u8>> {
    let valid =
        valid_seconds().prop_map(|(text, _)| String::from_utf8(text).unwrap().trim().to_string());
    (valid, 0usize..7, any::<prop::sample::Index>()).prop_map(|(text, how, at)| {
        let inner = at.index(text.len().max(1)).min(text.len());
        let miss = match how {
            0 => format!("+{text}"),
            1 => format!("-{text}"),
            2 => format!(
                "{}{}{}",
                &text[..inner],
                if inner == 0 || inner == text.len() {
                    "x"
                } else {
                    " "
                },
                &text[inner..]
            ),
            3 => format!("{text}.5"),
            4 => format!("{text}d"),
            5 if text.ends_with(|c: char| c.is_ascii_digit()) => format!("{text}x"),
            5 => format!("{text}{text}"),
            _ => format!("{text}ms"),
        };
        miss.into_bytes()
    })
}

// ---------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_and_agree_with_the_model(raw in prop::collection::vec(any::<u8>(), 0..64)) {
        check_all(&raw);
    }

    #[test]
    fn strings_near_the_grammar_agree_with_the_model(raw in grammar_soup()) {
        check_all(&raw);
    }

    #[test]
    fn every_generated_valid_duration_gives_its_value((raw, value) in valid_seconds()) {
        prop_assert_eq!(seconds(&raw), Ok(value));
        // The user timeout takes the same text with units, in milliseconds; a plain
        // number there counts milliseconds.
        let text = String::from_utf8(raw.clone()).unwrap();
        let plain = text.trim().bytes().all(|b| b.is_ascii_digit());
        let expected = if plain { value as u32 } else { value as u32 * 1000 };
        prop_assert_eq!(user_timeout(&raw), Ok(UserTimeout::Millis(expected)));
    }

    #[test]
    fn every_near_miss_is_refused_as_not_valid(raw in near_miss_seconds()) {
        prop_assert!(seconds(&raw).is_err(), "accepted {:?}", String::from_utf8_lossy(&raw));
    }

    #[test]
    fn whole_environments_never_panic_and_refusals_leave_defaults(
        values in prop::collection::vec(prop::option::of(prop_oneof![grammar_soup(), prop::collection::vec(any::<u8>(), 0..32)]), 6)
    ) {
        let lookup = |var: Var| {
            let i = Var::ALL.iter().position(|v| *v == var).unwrap();
            values[i].as_deref()
        };
        let parsed = Config::from_lookup(lookup);
        for (var, value) in Var::ALL.iter().zip(&values) {
            let refused = parsed.rejected().any(|r| r.var == *var);
            let mut alone = Config::DEFAULT;
            let accepted = value.as_deref().map(|raw| alone.set(*var, raw).is_ok());
            prop_assert_eq!(refused, accepted == Some(false), "{:?}", var);
            // The warning is one line, whatever the value.
            if let Some(rejected) = parsed.rejected().find(|r| r.var == *var) {
                prop_assert!(!rejected.to_string().contains('\n'));
            }
        }
    }
}

#[test]
fn the_model_itself_knows_the_documented_examples() {
    // Guards against a model that agrees with the parser by being wrong the same way.
    assert_eq!(model_seconds(b"1h30m"), Verdict::Accepted(5400));
    assert_eq!(model_seconds(b" 90S "), Verdict::Accepted(90));
    assert_eq!(
        model_seconds(b"32768"),
        Verdict::Refused { well_formed: true }
    );
    assert_eq!(
        model_seconds(b"30s1m"),
        Verdict::Refused { well_formed: false }
    );
    assert_eq!(
        model_seconds(b"1500ms"),
        Verdict::Refused { well_formed: false }
    );
    assert_eq!(
        model_seconds(b"+5"),
        Verdict::Refused { well_formed: false }
    );
    assert_eq!(model_count(b"127"), Verdict::Accepted(127));
    assert_eq!(model_count(b"3s"), Verdict::Refused { well_formed: false });
    assert_eq!(
        model_user_timeout(b"1m30s500ms"),
        Verdict::Accepted(UserTimeout::Millis(90_500))
    );
    assert_eq!(
        model_user_timeout(b"AUTO"),
        Verdict::Accepted(UserTimeout::Auto)
    );
    assert_eq!(
        model_user_timeout(b"2147483648"),
        Verdict::Refused { well_formed: true }
    );
    assert_eq!(
        model_keyword(b"\tFoRcE\n", &MODES),
        Verdict::Accepted(Mode::Force)
    );
    assert_eq!(model_keyword(b"", &LEVELS), Verdict::<LogLevel>::Empty);
}
