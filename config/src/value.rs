//! Parsers for single values: one function per kind of value, each taking the raw
//! bytes of an environment variable (or of a command-line option) and returning a
//! typed value or the reason it was refused.
//!
//! The grammar is deliberately strict: the only leniency is ASCII white space around
//! the value and the case of keywords and units. Anything else that is not exactly
//! documented (signs, inner spaces, fractions, trailing junk) is refused, because a
//! value that is silently reinterpreted is worse than one that is reported.

use core::fmt;

/// Why a value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueError {
    /// Set, but empty or only white space.
    Empty,
    /// Not a number, keyword or duration of the accepted form.
    Malformed,
    /// Well formed, but outside the range the kernel accepts (overflow included).
    OutOfRange,
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueError::Empty => "is empty",
            ValueError::Malformed => "is not valid",
            ValueError::OutOfRange => "is out of range",
        })
    }
}

/// What KEEPALIVE asks the library to do with each TCP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Turn SO_KEEPALIVE on and apply the configured timings.
    On,
    /// Leave every socket alone.
    Off,
    /// Apply the timings but leave SO_KEEPALIVE as the program sets it.
    Skip,
    /// Like `On`, and keep the user's values when the program later sets them itself.
    Force,
}

impl Mode {
    /// The keyword KEEPALIVE takes for this mode.
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::On => "on",
            Mode::Off => "off",
            Mode::Skip => "skip",
            Mode::Force => "force",
        }
    }
}

/// What KEEPALIVE_USER_TIMEOUT asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserTimeout {
    /// Set TCP_USER_TIMEOUT to 0: the kernel's retransmission limits apply.
    Off,
    /// Set TCP_USER_TIMEOUT to this many milliseconds (1..=i32::MAX).
    Millis(u32),
    /// Set TCP_USER_TIMEOUT to idle + interval * count of the socket, in milliseconds.
    Auto,
}

/// How much the library writes to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    Info,
    Debug,
}

impl LogLevel {
    /// The keyword KEEPALIVE_LOG takes for this level.
    pub const fn as_str(self) -> &'static str {
        match self {
            LogLevel::Off => "off",
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }
}

/// TCP_USER_TIMEOUT for `auto`: the time keepalive takes to give up on a silent peer,
/// idle + interval × count seconds, in milliseconds, capped at the kernel's largest
/// value. The library and the command both compute it here, so they cannot drift.
///
/// ```
/// assert_eq!(keepalive_config::auto_user_timeout_ms(60, 10, 3), 90_000);
/// ```
pub fn auto_user_timeout_ms(idle_secs: u32, interval_secs: u32, count: u32) -> u32 {
    let secs = u64::from(idle_secs) + u64::from(interval_secs) * u64::from(count);
    secs.saturating_mul(1000).min(MAX_USER_TIMEOUT_MS.into()) as u32
}

/// Largest TCP_KEEPIDLE / TCP_KEEPINTVL the kernel accepts (MAX_TCP_KEEPIDLE).
pub const MAX_SECONDS: u16 = 32767;
/// Largest TCP_KEEPCNT the kernel accepts (MAX_TCP_KEEPCNT).
pub const MAX_COUNT: u8 = 127;
/// Largest TCP_USER_TIMEOUT: the kernel takes a non-negative C int.
pub const MAX_USER_TIMEOUT_MS: u32 = i32::MAX as u32;

/// Parses KEEPALIVE: `on`, `off`, `skip` or `force`, in any case.
///
/// ```
/// use keepalive_config::{mode, Mode};
/// assert_eq!(mode(b"Force"), Ok(Mode::Force));
/// assert!(mode(b"yes").is_err());
/// ```
pub fn mode(raw: &[u8]) -> Result<Mode, ValueError> {
    keyword(
        raw,
        &[
            (b"on", Mode::On),
            (b"off", Mode::Off),
            (b"skip", Mode::Skip),
            (b"force", Mode::Force),
        ],
    )
}

/// Parses KEEPALIVE_LOG: `off`, `error`, `warn`, `info` or `debug`, in any case.
pub fn log_level(raw: &[u8]) -> Result<LogLevel, ValueError> {
    keyword(
        raw,
        &[
            (b"off", LogLevel::Off),
            (b"error", LogLevel::Error),
            (b"warn", LogLevel::Warn),
            (b"info", LogLevel::Info),
            (b"debug", LogLevel::Debug),
        ],
    )
}

/// Parses KEEPIDLE or KEEPINTVL: whole seconds 1..=32767, either a plain number
/// (seconds, as the C library read it) or a duration with units `s`, `m`, `h`.
///
/// ```
/// use keepalive_config::seconds;
/// assert_eq!(seconds(b"60"), Ok(60));
/// assert_eq!(seconds(b"1m30s"), Ok(90));
/// assert!(seconds(b"32768").is_err());
/// ```
pub fn seconds(raw: &[u8]) -> Result<u16, ValueError> {
    let millis = duration_millis(raw, Unit::Seconds, Unit::Seconds)?;
    let secs = millis / Unit::Seconds.millis();
    in_range(secs, 1, MAX_SECONDS.into()).map(|s| s as u16)
}

/// Parses KEEPCNT: a plain whole number 1..=127.
pub fn count(raw: &[u8]) -> Result<u8, ValueError> {
    let (number, rest) = leading_number(non_empty(raw)?)?;
    if !rest.is_empty() {
        return Err(ValueError::Malformed);
    }
    in_range(number, 1, MAX_COUNT.into()).map(|n| n as u8)
}

/// Parses KEEPALIVE_USER_TIMEOUT: `auto`, `off`, or milliseconds 1..=2147483647,
/// either a plain number (milliseconds) or a duration with units `ms`, `s`, `m`, `h`.
///
/// ```
/// use keepalive_config::{user_timeout, UserTimeout};
/// assert_eq!(user_timeout(b"30s"), Ok(UserTimeout::Millis(30_000)));
/// assert_eq!(user_timeout(b"AUTO"), Ok(UserTimeout::Auto));
/// ```
pub fn user_timeout(raw: &[u8]) -> Result<UserTimeout, ValueError> {
    if let Ok(word) = keyword(
        raw,
        &[(b"auto", UserTimeout::Auto), (b"off", UserTimeout::Off)],
    ) {
        return Ok(word);
    }
    let millis = duration_millis(raw, Unit::Millis, Unit::Millis)?;
    in_range(millis, 1, MAX_USER_TIMEOUT_MS.into()).map(|ms| UserTimeout::Millis(ms as u32))
}

/// Units of a duration, smallest first, so that `Ord` follows their size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Unit {
    Millis,
    Seconds,
    Minutes,
    Hours,
}

impl Unit {
    fn millis(self) -> u64 {
        match self {
            Unit::Millis => 1,
            Unit::Seconds => 1_000,
            Unit::Minutes => 60_000,
            Unit::Hours => 3_600_000,
        }
    }

    /// Splits a unit off the front of `text`; `ms` is tried before `m`.
    fn split(text: &[u8]) -> Option<(Unit, &[u8])> {
        const SUFFIXES: [(&[u8], Unit); 4] = [
            (b"ms", Unit::Millis),
            (b"s", Unit::Seconds),
            (b"m", Unit::Minutes),
            (b"h", Unit::Hours),
        ];
        SUFFIXES.iter().find_map(|&(suffix, unit)| {
            let (head, rest) = text.split_at_checked(suffix.len())?;
            head.eq_ignore_ascii_case(suffix).then_some((unit, rest))
        })
    }
}

/// Parses a plain number (counted in `bare` units) or a run of `<number><unit>`
/// terms with strictly decreasing units no smaller than `smallest` (`1h30m`),
/// returning milliseconds.
fn duration_millis(raw: &[u8], bare: Unit, smallest: Unit) -> Result<u64, ValueError> {
    let mut rest = non_empty(raw)?;
    let mut total: u64 = 0;
    let mut previous: Option<Unit> = None;
    loop {
        let (number, after_number) = leading_number(rest)?;
        if after_number.is_empty() && previous.is_none() {
            return number
                .checked_mul(bare.millis())
                .ok_or(ValueError::OutOfRange);
        }
        let (unit, after_unit) = Unit::split(after_number).ok_or(ValueError::Malformed)?;
        if unit < smallest || previous.is_some_and(|p| unit >= p) {
            return Err(ValueError::Malformed);
        }
        let term = number
            .checked_mul(unit.millis())
            .ok_or(ValueError::OutOfRange)?;
        total = total.checked_add(term).ok_or(ValueError::OutOfRange)?;
        if after_unit.is_empty() {
            return Ok(total);
        }
        previous = Some(unit);
        rest = after_unit;
    }
}

/// Splits the leading decimal digits off `text`. At least one digit is required;
/// a number that overflows u64 is out of range, not malformed.
fn leading_number(text: &[u8]) -> Result<(u64, &[u8]), ValueError> {
    let digits = text.iter().take_while(|b| b.is_ascii_digit()).count();
    let Some((number, rest)) = text.split_at_checked(digits).filter(|_| digits > 0) else {
        return Err(ValueError::Malformed);
    };
    let value = number.iter().try_fold(0u64, |acc, &digit| {
        acc.checked_mul(10)?
            .checked_add(u64::from(digit.wrapping_sub(b'0')))
    });
    value.map(|v| (v, rest)).ok_or(ValueError::OutOfRange)
}

fn keyword<T: Copy>(raw: &[u8], words: &[(&[u8], T)]) -> Result<T, ValueError> {
    let text = non_empty(raw)?;
    words
        .iter()
        .find(|(word, _)| text.eq_ignore_ascii_case(word))
        .map(|&(_, value)| value)
        .ok_or(ValueError::Malformed)
}

/// Trims surrounding ASCII white space; an empty result is an error.
fn non_empty(raw: &[u8]) -> Result<&[u8], ValueError> {
    let text = raw.trim_ascii();
    if text.is_empty() {
        Err(ValueError::Empty)
    } else {
        Ok(text)
    }
}

fn in_range(value: u64, min: u64, max: u64) -> Result<u64, ValueError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ValueError::OutOfRange)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ValueError::*;

    #[test]
    fn seconds_accepts_plain_numbers_and_the_kernel_bounds() {
        assert_eq!(seconds(b"1"), Ok(1));
        assert_eq!(seconds(b"60"), Ok(60));
        assert_eq!(seconds(b"32767"), Ok(32767));
        assert_eq!(seconds(b"007"), Ok(7));
    }

    #[test]
    fn seconds_refuses_zero_and_values_past_the_kernel_bound() {
        assert_eq!(seconds(b"0"), Err(OutOfRange));
        assert_eq!(seconds(b"0s"), Err(OutOfRange));
        assert_eq!(seconds(b"32768"), Err(OutOfRange));
        assert_eq!(seconds(b"9h"), Ok(32400));
        assert_eq!(seconds(b"10h"), Err(OutOfRange));
    }

    #[test]
    fn seconds_refuses_overflow_instead_of_wrapping_like_atoi() {
        assert_eq!(seconds(b"4294967326"), Err(OutOfRange));
        assert_eq!(seconds(b"18446744073709551615"), Err(OutOfRange));
        assert_eq!(seconds(b"18446744073709551616"), Err(OutOfRange));
        assert_eq!(seconds(b"99999999999999999999999999"), Err(OutOfRange));
        assert_eq!(seconds(b"18446744073709551615h"), Err(OutOfRange));
        assert_eq!(
            seconds(b"5124095576030431h5124095576030431m"),
            Err(OutOfRange)
        );
    }

    #[test]
    fn seconds_accepts_units_in_any_case_and_compound_durations() {
        assert_eq!(seconds(b"90s"), Ok(90));
        assert_eq!(seconds(b"5m"), Ok(300));
        assert_eq!(seconds(b"2h"), Ok(7200));
        assert_eq!(seconds(b"1h30m"), Ok(5400));
        assert_eq!(seconds(b"1m30s"), Ok(90));
        assert_eq!(seconds(b"1h1m1s"), Ok(3661));
        assert_eq!(seconds(b"90S"), Ok(90));
        assert_eq!(seconds(b"5M"), Ok(300));
        assert_eq!(seconds(b"0m30s"), Ok(30));
    }

    #[test]
    fn seconds_refuses_units_out_of_order_repeated_or_unknown() {
        assert_eq!(seconds(b"30s1m"), Err(Malformed));
        assert_eq!(seconds(b"1m1m"), Err(Malformed));
        assert_eq!(seconds(b"1m30"), Err(Malformed));
        assert_eq!(seconds(b"5d"), Err(Malformed));
        assert_eq!(seconds(b"1500ms"), Err(Malformed));
        assert_eq!(seconds(b"s"), Err(Malformed));
        assert_eq!(seconds(b"5 m"), Err(Malformed));
        assert_eq!(seconds(b"5sec"), Err(Malformed));
    }

    #[test]
    fn seconds_refuses_what_atoi_would_have_bent() {
        assert_eq!(seconds(b"abc"), Err(Malformed));
        assert_eq!(seconds(b"30x"), Err(Malformed));
        assert_eq!(seconds(b"-5"), Err(Malformed));
        assert_eq!(seconds(b"+5"), Err(Malformed));
        assert_eq!(seconds(b"1.5"), Err(Malformed));
        assert_eq!(seconds(b"0x10"), Err(Malformed));
        assert_eq!(seconds(b"6 0"), Err(Malformed));
        assert_eq!(seconds(b"\xff60"), Err(Malformed));
        assert_eq!(seconds("６０".as_bytes()), Err(Malformed));
    }

    #[test]
    fn surrounding_white_space_is_tolerated_but_not_emptiness() {
        assert_eq!(seconds(b" 60 "), Ok(60));
        assert_eq!(seconds(b"\t5m\n"), Ok(300));
        assert_eq!(count(b" 3"), Ok(3));
        assert_eq!(mode(b" off "), Ok(Mode::Off));
        assert_eq!(seconds(b""), Err(Empty));
        assert_eq!(seconds(b"  \t"), Err(Empty));
        assert_eq!(count(b""), Err(Empty));
        assert_eq!(mode(b""), Err(Empty));
        assert_eq!(user_timeout(b" "), Err(Empty));
        assert_eq!(log_level(b""), Err(Empty));
    }

    #[test]
    fn count_takes_a_plain_number_from_1_to_127() {
        assert_eq!(count(b"1"), Ok(1));
        assert_eq!(count(b"127"), Ok(127));
        assert_eq!(count(b"0"), Err(OutOfRange));
        assert_eq!(count(b"128"), Err(OutOfRange));
        assert_eq!(count(b"4294967299"), Err(OutOfRange));
        assert_eq!(count(b"99999999999999999999"), Err(OutOfRange));
        assert_eq!(count(b"3s"), Err(Malformed));
        assert_eq!(count(b"-1"), Err(Malformed));
        assert_eq!(count(b"three"), Err(Malformed));
    }

    #[test]
    fn user_timeout_takes_milliseconds_durations_and_keywords() {
        assert_eq!(user_timeout(b"1"), Ok(UserTimeout::Millis(1)));
        assert_eq!(user_timeout(b"5000"), Ok(UserTimeout::Millis(5000)));
        assert_eq!(user_timeout(b"1500ms"), Ok(UserTimeout::Millis(1500)));
        assert_eq!(user_timeout(b"30s"), Ok(UserTimeout::Millis(30_000)));
        assert_eq!(user_timeout(b"1m30s500ms"), Ok(UserTimeout::Millis(90_500)));
        assert_eq!(
            user_timeout(b"2147483647"),
            Ok(UserTimeout::Millis(i32::MAX as u32))
        );
        assert_eq!(user_timeout(b"auto"), Ok(UserTimeout::Auto));
        assert_eq!(user_timeout(b"Auto"), Ok(UserTimeout::Auto));
        assert_eq!(user_timeout(b"OFF"), Ok(UserTimeout::Off));
    }

    #[test]
    fn user_timeout_refuses_zero_overflow_and_garbage() {
        assert_eq!(user_timeout(b"0"), Err(OutOfRange));
        assert_eq!(user_timeout(b"2147483648"), Err(OutOfRange));
        assert_eq!(user_timeout(b"597h"), Err(OutOfRange));
        assert_eq!(user_timeout(b"18446744073709551616"), Err(OutOfRange));
        assert_eq!(user_timeout(b"automatic"), Err(Malformed));
        assert_eq!(user_timeout(b"-1"), Err(Malformed));
        assert_eq!(user_timeout(b"10ms5s"), Err(Malformed));
    }

    #[test]
    fn auto_user_timeout_is_the_keepalive_window_capped_at_the_kernel_limit() {
        assert_eq!(auto_user_timeout_ms(1, 1, 3), 4_000);
        assert_eq!(auto_user_timeout_ms(7200, 75, 9), 7_875_000);
        assert_eq!(auto_user_timeout_ms(32767, 32767, 127), MAX_USER_TIMEOUT_MS);
        assert_eq!(
            auto_user_timeout_ms(u32::MAX, u32::MAX, u32::MAX),
            MAX_USER_TIMEOUT_MS
        );
    }

    #[test]
    fn keywords_spell_back_to_what_the_parsers_accept() {
        for m in [Mode::On, Mode::Off, Mode::Skip, Mode::Force] {
            assert_eq!(mode(m.as_str().as_bytes()), Ok(m));
        }
        for l in [
            LogLevel::Off,
            LogLevel::Error,
            LogLevel::Warn,
            LogLevel::Info,
            LogLevel::Debug,
        ] {
            assert_eq!(log_level(l.as_str().as_bytes()), Ok(l));
        }
    }

    #[test]
    fn keywords_match_in_any_case_and_nothing_else() {
        assert_eq!(mode(b"on"), Ok(Mode::On));
        assert_eq!(mode(b"OFF"), Ok(Mode::Off));
        assert_eq!(mode(b"Skip"), Ok(Mode::Skip));
        assert_eq!(mode(b"fOrCe"), Ok(Mode::Force));
        assert_eq!(mode(b"yes"), Err(Malformed));
        assert_eq!(mode(b"1"), Err(Malformed));
        assert_eq!(mode(b"o n"), Err(Malformed));
        assert_eq!(mode(b"onn"), Err(Malformed));
        assert_eq!(log_level(b"off"), Ok(LogLevel::Off));
        assert_eq!(log_level(b"ERROR"), Ok(LogLevel::Error));
        assert_eq!(log_level(b"Warn"), Ok(LogLevel::Warn));
        assert_eq!(log_level(b"info"), Ok(LogLevel::Info));
        assert_eq!(log_level(b"debug"), Ok(LogLevel::Debug));
        assert_eq!(log_level(b"warning"), Err(Malformed));
        assert_eq!(log_level(b"trace"), Err(Malformed));
    }
}
