//! The configuration of libkeepalive: which environment variables it reads, what each
//! accepts, and the warning a refused value gets.
//!
//! This crate is shared by the preload library and the `keepalive` command, so that
//! both accept and refuse exactly the same values. It is `no_std` and never allocates:
//! the library parses its environment before `main` runs, inside programs it has
//! never seen.
//!
//! ```
//! use keepalive_config::{Config, Mode, Var};
//!
//! let env = [("KEEPIDLE", "5m"), ("KEEPCNT", "300")];
//! let lookup = |var: Var| env.iter().find(|(n, _)| *n == var.name()).map(|(_, v)| v.as_bytes());
//! let parsed = Config::from_lookup(lookup);
//!
//! assert_eq!(parsed.config.mode, Mode::On);
//! assert_eq!(parsed.config.idle, Some(300));
//! assert_eq!(parsed.config.count, None); // refused, so left to the kernel
//! let refused: Vec<_> = parsed.rejected().collect();
//! assert_eq!(refused[0].var, Var::Count);
//! ```
#![cfg_attr(not(test), no_std)]

mod options;
mod shown;
mod value;

use core::ffi::CStr;
use core::fmt;

pub use options::{Opt, Wanted};
pub use shown::Shown;
pub use value::{
    LogLevel, MAX_COUNT, MAX_SECONDS, MAX_USER_TIMEOUT_MS, Mode, UserTimeout, ValueError,
    auto_user_timeout_ms, count, log_level, mode, seconds, user_timeout,
};

/// The settings in force for a process.
///
/// `None` for a timing means "not configured": the socket keeps the kernel's value
/// (the namespace's `net.ipv4.tcp_keepalive_*` sysctls).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub mode: Mode,
    /// TCP_KEEPIDLE in seconds.
    pub idle: Option<u16>,
    /// TCP_KEEPINTVL in seconds.
    pub interval: Option<u16>,
    /// TCP_KEEPCNT.
    pub count: Option<u8>,
    pub user_timeout: Option<UserTimeout>,
    pub log: LogLevel,
}

impl Config {
    /// What applies when no variable is set: keepalive on with the kernel's timings,
    /// warnings only, as the C library did.
    pub const DEFAULT: Config = Config {
        mode: Mode::On,
        idle: None,
        interval: None,
        count: None,
        user_timeout: None,
        log: LogLevel::Warn,
    };

    /// Reads every variable through `lookup` (raw value, `None` when unset).
    /// A refused value leaves its setting at the default and is listed in
    /// [`Parsed::rejected`]; the other settings still apply.
    pub fn from_lookup<'a>(mut lookup: impl FnMut(Var) -> Option<&'a [u8]>) -> Parsed<'a> {
        let mut parsed = Parsed {
            config: Config::DEFAULT,
            rejected: [None; Var::ALL.len()],
        };
        for (slot, var) in parsed.rejected.iter_mut().zip(Var::ALL) {
            let Some(raw) = lookup(var) else { continue };
            if let Err(error) = parsed.config.set(var, raw) {
                *slot = Some(Rejected {
                    var,
                    value: raw,
                    error,
                });
            }
        }
        parsed
    }

    /// Parses `raw` as the value of `var` and stores it.
    pub fn set(&mut self, var: Var, raw: &[u8]) -> Result<(), ValueError> {
        match var {
            Var::Mode => self.mode = mode(raw)?,
            Var::Idle => self.idle = Some(seconds(raw)?),
            Var::Interval => self.interval = Some(seconds(raw)?),
            Var::Count => self.count = Some(count(raw)?),
            Var::UserTimeout => self.user_timeout = Some(user_timeout(raw)?),
            Var::Log => self.log = log_level(raw)?,
        }
        Ok(())
    }
}

/// A one-line summary, as the library logs it at `info`:
/// `keepalive on, idle 60s, interval kernel's, count 5, user timeout auto`.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "keepalive {}, idle ", self.mode.as_str())?;
        seconds_or_kernel(f, self.idle)?;
        f.write_str(", interval ")?;
        seconds_or_kernel(f, self.interval)?;
        match self.count {
            Some(count) => write!(f, ", count {count}")?,
            None => f.write_str(", count kernel's")?,
        }
        match self.user_timeout {
            None => f.write_str(", user timeout unset"),
            Some(UserTimeout::Off) => f.write_str(", user timeout off"),
            Some(UserTimeout::Auto) => f.write_str(", user timeout auto"),
            Some(UserTimeout::Millis(ms)) => write!(f, ", user timeout {ms}ms"),
        }
    }
}

fn seconds_or_kernel(f: &mut fmt::Formatter<'_>, value: Option<u16>) -> fmt::Result {
    match value {
        Some(secs) => write!(f, "{secs}s"),
        None => f.write_str("kernel's"),
    }
}

/// The result of reading the environment: the configuration, and what was refused.
#[derive(Debug, Clone, Copy)]
pub struct Parsed<'a> {
    pub config: Config,
    rejected: [Option<Rejected<'a>>; Var::ALL.len()],
}

impl<'a> Parsed<'a> {
    /// The refused values, in the order of [`Var::ALL`].
    pub fn rejected(&self) -> impl Iterator<Item = &Rejected<'a>> {
        self.rejected.iter().flatten()
    }
}

/// One environment variable the library reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    Mode,
    Idle,
    Interval,
    Count,
    UserTimeout,
    Log,
}

impl Var {
    /// Every variable, in the order they are read and reported.
    pub const ALL: [Var; 6] = [
        Var::Log,
        Var::Mode,
        Var::Idle,
        Var::Interval,
        Var::Count,
        Var::UserTimeout,
    ];

    /// The environment variable's name.
    pub const fn name(self) -> &'static str {
        match self {
            Var::Mode => "KEEPALIVE",
            Var::Idle => "KEEPIDLE",
            Var::Interval => "KEEPINTVL",
            Var::Count => "KEEPCNT",
            Var::UserTimeout => "KEEPALIVE_USER_TIMEOUT",
            Var::Log => "KEEPALIVE_LOG",
        }
    }

    /// The name as a C string, for getenv.
    pub const fn c_name(self) -> &'static CStr {
        match self {
            Var::Mode => c"KEEPALIVE",
            Var::Idle => c"KEEPIDLE",
            Var::Interval => c"KEEPINTVL",
            Var::Count => c"KEEPCNT",
            Var::UserTimeout => c"KEEPALIVE_USER_TIMEOUT",
            Var::Log => c"KEEPALIVE_LOG",
        }
    }

    /// What the variable accepts, in words, for messages and help texts.
    pub const fn accepted(self) -> &'static str {
        match self {
            Var::Mode => "on, off, skip or force (any case)",
            Var::Idle | Var::Interval => {
                "whole seconds from 1 to 32767, as a number (60) or with units s, m, h (90s, 5m, 1h30m)"
            }
            Var::Count => "a whole number from 1 to 127",
            Var::UserTimeout => {
                "milliseconds from 1 to 2147483647, as a number (30000) or with units ms, s, m, h (30s, 2m); or auto; or off"
            }
            Var::Log => "off, error, warn, info or debug (any case)",
        }
    }

    /// What happens instead when the value is refused.
    pub const fn fallback(self) -> &'static str {
        match self {
            Var::Mode => "keepalive stays on",
            Var::Idle | Var::Interval | Var::Count => "the kernel's value applies",
            Var::UserTimeout => "TCP_USER_TIMEOUT is left alone",
            Var::Log => "logging stays at warn",
        }
    }
}

/// A refused value. Its `Display` is the whole warning, without the `libkeepalive:`
/// prefix: the variable, the value as given, why, what is accepted, and what applies.
#[derive(Debug, Clone, Copy)]
pub struct Rejected<'a> {
    pub var: Var,
    pub value: &'a [u8],
    pub error: ValueError,
}

impl fmt::Display for Rejected<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={} {}; accepted: {}; {}",
            self.var.name(),
            Shown(self.value),
            self.error,
            self.var.accepted(),
            self.var.fallback()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(env: &[(&str, &[u8])]) -> Parsed<'static> {
        let owned: Vec<(String, &'static [u8])> = env
            .iter()
            .map(|(n, v)| (n.to_string(), &*Box::leak(v.to_vec().into_boxed_slice())))
            .collect();
        Config::from_lookup(move |var| owned.iter().find(|(n, _)| n == var.name()).map(|(_, v)| *v))
    }

    #[test]
    fn nothing_set_means_keepalive_on_with_kernel_timings() {
        let parsed = parse(&[]);
        assert_eq!(parsed.config, Config::DEFAULT);
        assert_eq!(parsed.rejected().count(), 0);
    }

    #[test]
    fn every_variable_is_read() {
        let parsed = parse(&[
            ("KEEPALIVE", b"force"),
            ("KEEPIDLE", b"60"),
            ("KEEPINTVL", b"10s"),
            ("KEEPCNT", b"5"),
            ("KEEPALIVE_USER_TIMEOUT", b"auto"),
            ("KEEPALIVE_LOG", b"debug"),
        ]);
        assert_eq!(
            parsed.config,
            Config {
                mode: Mode::Force,
                idle: Some(60),
                interval: Some(10),
                count: Some(5),
                user_timeout: Some(UserTimeout::Auto),
                log: LogLevel::Debug,
            }
        );
        assert_eq!(parsed.rejected().count(), 0);
    }

    #[test]
    fn a_refused_value_falls_back_and_the_others_still_apply() {
        let parsed = parse(&[
            ("KEEPIDLE", b"abc"),
            ("KEEPINTVL", b"7"),
            ("KEEPALIVE", b"maybe"),
        ]);
        assert_eq!(parsed.config.idle, None);
        assert_eq!(parsed.config.interval, Some(7));
        assert_eq!(parsed.config.mode, Mode::On);
        let vars: Vec<Var> = parsed.rejected().map(|r| r.var).collect();
        assert_eq!(vars, [Var::Mode, Var::Idle]);
    }

    #[test]
    fn every_variable_set_but_empty_is_refused_and_defaults_apply() {
        let env: Vec<(&str, &[u8])> = Var::ALL.iter().map(|v| (v.name(), &b""[..])).collect();
        let parsed = parse(&env);
        assert_eq!(parsed.config, Config::DEFAULT);
        assert_eq!(parsed.rejected().count(), Var::ALL.len());
        assert!(parsed.rejected().all(|r| r.error == ValueError::Empty));
    }

    #[test]
    fn the_warning_names_variable_value_reason_grammar_and_fallback() {
        let parsed = parse(&[("KEEPIDLE", b"40000")]);
        let warning = parsed.rejected().next().unwrap().to_string();
        assert_eq!(
            warning,
            "KEEPIDLE=\"40000\" is out of range; accepted: whole seconds from 1 to 32767, as a \
             number (60) or with units s, m, h (90s, 5m, 1h30m); the kernel's value applies"
        );
    }

    #[test]
    fn c_names_are_the_names() {
        for var in Var::ALL {
            assert_eq!(var.c_name().to_str(), Ok(var.name()));
        }
    }

    #[test]
    fn the_summary_names_every_setting() {
        let parsed = parse(&[
            ("KEEPIDLE", b"1m"),
            ("KEEPCNT", b"3"),
            ("KEEPALIVE_USER_TIMEOUT", b"7s"),
        ]);
        assert_eq!(
            parsed.config.to_string(),
            "keepalive on, idle 60s, interval kernel's, count 3, user timeout 7000ms"
        );
        assert_eq!(
            Config::DEFAULT.to_string(),
            "keepalive on, idle kernel's, interval kernel's, count kernel's, user timeout unset"
        );
    }

    #[test]
    fn the_warning_shows_unprintable_bytes_escaped() {
        let parsed = parse(&[("KEEPCNT", b"3\xff\"\n")]);
        let warning = parsed.rejected().next().unwrap().to_string();
        assert!(
            warning.starts_with("KEEPCNT=\"3\\xff\\\"\\n\" is not valid;"),
            "{warning}"
        );
    }
}
