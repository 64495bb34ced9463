//! The configuration as the BPF program reads it: `struct settings` of
//! bpf/keepalive.bpf.c, filled from the same [`Config`] preload mode uses, so that both
//! modes mean the same thing for the same options.

use keepalive_config::{Config, Mode, UserTimeout};

/// An option that is not configured: the BPF program leaves it as it is.
const UNSET: i32 = -1;
/// TCP_USER_TIMEOUT = idle + interval × count of each socket, computed in the kernel.
const USER_TIMEOUT_AUTO: i32 = -2;

/// `struct settings` of keepalive.bpf.c, field for field.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// 0 off, 1 on, 2 skip, 3 force.
    pub mode: u32,
    /// SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT, TCP_USER_TIMEOUT, in the
    /// order of `enum opt`: [`UNSET`], or the value to set.
    pub value: [i32; 5],
}

// SAFETY: Settings is repr(C), made only of integers with no padding (4 + 5 × 4
// bytes), so any bit pattern is a valid value and it can be copied to and from a map.
unsafe impl aya::Pod for Settings {}

impl Settings {
    /// What the BPF program should do for `config`: the options preload mode would set
    /// on a new socket, with the same values.
    pub fn from_config(config: &Config) -> Settings {
        let keepalive = match config.mode {
            Mode::On | Mode::Force => 1,
            Mode::Skip | Mode::Off => UNSET,
        };
        let user_timeout = match config.user_timeout {
            None => UNSET,
            Some(UserTimeout::Off) => 0,
            Some(UserTimeout::Auto) => USER_TIMEOUT_AUTO,
            // At most i32::MAX, by the parser.
            Some(UserTimeout::Millis(ms)) => ms as i32,
        };
        Settings {
            mode: match config.mode {
                Mode::Off => 0,
                Mode::On => 1,
                Mode::Skip => 2,
                Mode::Force => 3,
            },
            value: [
                keepalive,
                config.idle.map_or(UNSET, i32::from),
                config.interval.map_or(UNSET, i32::from),
                config.count.map_or(UNSET, i32::from),
                user_timeout,
            ],
        }
    }

    /// The configuration these settings came from, for `status` (the log level is not
    /// kept in the kernel).
    pub fn to_config(self) -> Config {
        let seconds = |v: i32| u16::try_from(v).ok();
        Config {
            mode: match self.mode {
                1 => Mode::On,
                2 => Mode::Skip,
                3 => Mode::Force,
                _ => Mode::Off,
            },
            idle: seconds(self.value[1]),
            interval: seconds(self.value[2]),
            count: u8::try_from(self.value[3]).ok(),
            user_timeout: match self.value[4] {
                UNSET => None,
                USER_TIMEOUT_AUTO => Some(UserTimeout::Auto),
                0 => Some(UserTimeout::Off),
                ms => u32::try_from(ms).ok().map(UserTimeout::Millis),
            },
            ..Config::DEFAULT
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(mode: Mode, user_timeout: Option<UserTimeout>) -> Config {
        Config {
            mode,
            idle: Some(60),
            interval: None,
            count: Some(3),
            user_timeout,
            ..Config::DEFAULT
        }
    }

    #[test]
    fn on_and_force_set_keepalive_skip_leaves_it() {
        let on = Settings::from_config(&config(Mode::On, None));
        assert_eq!(
            on,
            Settings {
                mode: 1,
                value: [1, 60, UNSET, 3, UNSET]
            }
        );
        let skip = Settings::from_config(&config(Mode::Skip, None));
        assert_eq!(skip.value[0], UNSET);
        assert_eq!(Settings::from_config(&config(Mode::Force, None)).mode, 3);
    }

    #[test]
    fn user_timeout_words_become_the_programs_values() {
        let value = |t| Settings::from_config(&config(Mode::On, Some(t))).value[4];
        assert_eq!(value(UserTimeout::Off), 0);
        assert_eq!(value(UserTimeout::Auto), USER_TIMEOUT_AUTO);
        assert_eq!(value(UserTimeout::Millis(i32::MAX as u32)), i32::MAX);
    }

    #[test]
    fn settings_read_back_as_the_configuration() {
        for mode in [Mode::On, Mode::Skip, Mode::Force, Mode::Off] {
            for timeout in [None, Some(UserTimeout::Off), Some(UserTimeout::Auto)] {
                let config = config(mode, timeout);
                assert_eq!(Settings::from_config(&config).to_config(), config);
            }
        }
    }

    #[test]
    fn the_layout_matches_the_c_struct() {
        assert_eq!(core::mem::size_of::<Settings>(), 24);
    }
}
