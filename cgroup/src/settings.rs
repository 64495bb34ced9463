//! The configuration as the BPF program reads it: `struct settings` of
//! bpf/keepalive.bpf.c, filled from the same [`Config`] preload mode uses, so that both
//! modes mean the same thing for the same options.

use keepalive_config::{Config, Mode, Opt, UserTimeout, Wanted};

use crate::layout::{
    MODE_FORCE, MODE_OFF, MODE_ON, MODE_SKIP, OPT_CNT, OPT_COUNT, OPT_IDLE, OPT_INTVL,
    OPT_KEEPALIVE, OPT_USER_TIMEOUT, SETTINGS_MODE_OFFSET, SETTINGS_SIZE, SETTINGS_VALUE_OFFSET,
    UNSET, USER_TIMEOUT_AUTO,
};

/// `struct settings` of bpf/keepalive.h, field for field (checked below against the
/// numbers build.rs generated from the header).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// One of the header's MODE_* values.
    pub mode: u32,
    /// SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT, TCP_USER_TIMEOUT, in the
    /// order of `enum opt`: [`UNSET`], or the value to set.
    pub value: [i32; OPT_COUNT],
}

const _: () = assert!(size_of::<Settings>() == SETTINGS_SIZE);
// The options in the order of keepalive-config's Opt, which fills `value`.
const _: () = assert!(Opt::ALL.len() == OPT_COUNT);
const _: () = assert!(Opt::KeepAlive as usize == OPT_KEEPALIVE);
const _: () = assert!(Opt::Idle as usize == OPT_IDLE);
const _: () = assert!(Opt::Interval as usize == OPT_INTVL);
const _: () = assert!(Opt::Count as usize == OPT_CNT);
const _: () = assert!(Opt::UserTimeout as usize == OPT_USER_TIMEOUT);
const _: () = assert!(std::mem::offset_of!(Settings, mode) == SETTINGS_MODE_OFFSET);
const _: () = assert!(std::mem::offset_of!(Settings, value) == SETTINGS_VALUE_OFFSET);

// SAFETY: Settings is repr(C), made only of integers with no padding (its size is the
// sum of its fields', asserted above against the C struct), so any bit pattern is a
// valid value and it can be copied to and from a map.
unsafe impl aya::Pod for Settings {}

impl Settings {
    /// What the BPF program should do for `config`: the options preload mode would set
    /// on a new socket, with the same values.
    pub fn from_config(config: &Config) -> Settings {
        let value = Opt::ALL.map(|opt| match config.wanted(opt) {
            None => UNSET,
            Some(Wanted::Value(value)) => value,
            Some(Wanted::AutoUserTimeout) => USER_TIMEOUT_AUTO,
        });
        Settings {
            mode: match config.mode {
                Mode::Off => MODE_OFF,
                Mode::On => MODE_ON,
                Mode::Skip => MODE_SKIP,
                Mode::Force => MODE_FORCE,
            },
            value,
        }
    }

    /// The configuration these settings came from, for `status` (the log level is not
    /// kept in the kernel).
    pub fn to_config(self) -> Config {
        let seconds = |v: i32| u16::try_from(v).ok();
        Config {
            mode: match self.mode {
                MODE_ON => Mode::On,
                MODE_SKIP => Mode::Skip,
                MODE_FORCE => Mode::Force,
                _ => Mode::Off,
            },
            idle: seconds(self.value[OPT_IDLE]),
            interval: seconds(self.value[OPT_INTVL]),
            count: u8::try_from(self.value[OPT_CNT]).ok(),
            user_timeout: match self.value[OPT_USER_TIMEOUT] {
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
                mode: MODE_ON,
                value: [1, 60, UNSET, 3, UNSET]
            }
        );
        let skip = Settings::from_config(&config(Mode::Skip, None));
        assert_eq!(skip.value[OPT_KEEPALIVE], UNSET);
        assert_eq!(
            Settings::from_config(&config(Mode::Force, None)).mode,
            MODE_FORCE
        );
    }

    #[test]
    fn user_timeout_words_become_the_programs_values() {
        let value = |t| Settings::from_config(&config(Mode::On, Some(t))).value[OPT_USER_TIMEOUT];
        assert_eq!(value(UserTimeout::Off), 0);
        assert_eq!(value(UserTimeout::Auto), USER_TIMEOUT_AUTO);
        assert_eq!(value(UserTimeout::Millis(i32::MAX as u32)), i32::MAX);
    }

    #[test]
    fn settings_read_back_as_the_configuration() {
        for mode in [Mode::On, Mode::Skip, Mode::Force] {
            for timeout in [None, Some(UserTimeout::Off), Some(UserTimeout::Auto)] {
                let config = config(mode, timeout);
                assert_eq!(Settings::from_config(&config).to_config(), config);
            }
        }
        // Off sets nothing, so nothing else is kept.
        let off = Settings::from_config(&config(Mode::Off, Some(UserTimeout::Auto)));
        assert_eq!(
            off.to_config(),
            Config {
                mode: Mode::Off,
                ..Config::DEFAULT
            }
        );
    }
}
