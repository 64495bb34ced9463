//! The socket options keepalive sets, and the value a configuration asks for each:
//! the one mapping that the preload library, cgroup mode's settings and
//! `keepalive apply` all use, so that the same options mean the same thing in each.
//!
//! ```
//! use keepalive_config::{Config, Mode, Opt, UserTimeout, Wanted};
//!
//! let config = Config { idle: Some(60), user_timeout: Some(UserTimeout::Auto), ..Config::DEFAULT };
//! assert_eq!(config.wanted(Opt::KeepAlive), Some(Wanted::Value(1)));
//! assert_eq!(config.wanted(Opt::Idle), Some(Wanted::Value(60)));
//! assert_eq!(config.wanted(Opt::Interval), None); // the kernel's
//! assert_eq!(config.wanted(Opt::UserTimeout), Some(Wanted::AutoUserTimeout));
//! let off = Config { mode: Mode::Off, ..config };
//! assert_eq!(off.wanted(Opt::Idle), None);
//! ```

use core::fmt;

use crate::{Config, Mode, UserTimeout};

/// A socket option keepalive may set, in the order it sets them on a new socket:
/// the timings before the user timeout, whose `auto` value is computed from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opt {
    KeepAlive,
    Idle,
    Interval,
    Count,
    UserTimeout,
}

impl Opt {
    pub const ALL: [Opt; 5] = [
        Opt::KeepAlive,
        Opt::Idle,
        Opt::Interval,
        Opt::Count,
        Opt::UserTimeout,
    ];

    /// The option's name, as the kernel's headers spell it.
    pub const fn name(self) -> &'static str {
        match self {
            Opt::KeepAlive => "SO_KEEPALIVE",
            Opt::Idle => "TCP_KEEPIDLE",
            Opt::Interval => "TCP_KEEPINTVL",
            Opt::Count => "TCP_KEEPCNT",
            Opt::UserTimeout => "TCP_USER_TIMEOUT",
        }
    }
}

impl fmt::Display for Opt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The value a configuration asks for an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    Value(i32),
    /// TCP_USER_TIMEOUT = idle + interval × count of the socket, in milliseconds
    /// ([`crate::auto_user_timeout_ms`]), worked out where the socket is.
    AutoUserTimeout,
}

impl Config {
    /// What this configuration asks for `opt` on a TCP connection it covers; `None`
    /// leaves the option as it is (the kernel's default on a new socket, or what the
    /// program set).
    pub fn wanted(&self, opt: Opt) -> Option<Wanted> {
        if self.mode == Mode::Off {
            return None;
        }
        let value = match opt {
            Opt::KeepAlive => match self.mode {
                Mode::On | Mode::Force => 1,
                Mode::Skip | Mode::Off => return None,
            },
            Opt::Idle => self.idle?.into(),
            Opt::Interval => self.interval?.into(),
            Opt::Count => self.count?.into(),
            Opt::UserTimeout => match self.user_timeout? {
                UserTimeout::Off => 0,
                // At most i32::MAX, by the parser.
                UserTimeout::Millis(ms) => i32::try_from(ms).unwrap_or(i32::MAX),
                UserTimeout::Auto => return Some(Wanted::AutoUserTimeout),
            },
        };
        Some(Wanted::Value(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LogLevel;

    fn config(mode: Mode) -> Config {
        Config {
            mode,
            idle: Some(60),
            interval: None,
            count: Some(3),
            user_timeout: Some(UserTimeout::Auto),
            log: LogLevel::Warn,
        }
    }

    #[test]
    fn on_and_force_set_keepalive_and_the_configured_timings_only() {
        for mode in [Mode::On, Mode::Force] {
            let c = config(mode);
            assert_eq!(c.wanted(Opt::KeepAlive), Some(Wanted::Value(1)));
            assert_eq!(c.wanted(Opt::Idle), Some(Wanted::Value(60)));
            assert_eq!(c.wanted(Opt::Interval), None);
            assert_eq!(c.wanted(Opt::Count), Some(Wanted::Value(3)));
            assert_eq!(c.wanted(Opt::UserTimeout), Some(Wanted::AutoUserTimeout));
        }
    }

    #[test]
    fn skip_leaves_so_keepalive_to_the_program() {
        let c = config(Mode::Skip);
        assert_eq!(c.wanted(Opt::KeepAlive), None);
        assert_eq!(c.wanted(Opt::Idle), Some(Wanted::Value(60)));
    }

    #[test]
    fn off_touches_nothing() {
        let c = config(Mode::Off);
        assert!(Opt::ALL.iter().all(|&opt| c.wanted(opt).is_none()));
    }

    #[test]
    fn user_timeout_values() {
        let mut c = config(Mode::On);
        c.user_timeout = Some(UserTimeout::Off);
        assert_eq!(c.wanted(Opt::UserTimeout), Some(Wanted::Value(0)));
        c.user_timeout = Some(UserTimeout::Millis(i32::MAX as u32));
        assert_eq!(c.wanted(Opt::UserTimeout), Some(Wanted::Value(i32::MAX)));
        c.user_timeout = None;
        assert_eq!(c.wanted(Opt::UserTimeout), None);
    }
}
