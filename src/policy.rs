//! Pure decisions: which sockets the library covers, which options it sets on them,
//! and what value each gets. No system calls here, so all of it is unit-tested.

use core::ffi::c_int;
use core::fmt;

use keepalive_config::{Config, Mode, UserTimeout};

/// IPPROTO_MPTCP: Multipath TCP sockets take the keepalive options like TCP ones.
const IPPROTO_MPTCP: c_int = 262;

/// The bits of socket()'s type argument that name the type; the rest are flags
/// (SOCK_NONBLOCK, SOCK_CLOEXEC) that python, nc and node pass.
const SOCK_TYPE_MASK: c_int = 0xf;

/// Whether socket(domain, ty, protocol) makes a TCP socket: IPv4 or IPv6, stream,
/// and TCP (protocol 0 picks TCP for inet streams) or MPTCP.
pub fn is_tcp(domain: c_int, ty: c_int, protocol: c_int) -> bool {
    matches!(domain, libc::AF_INET | libc::AF_INET6)
        && ty & SOCK_TYPE_MASK == libc::SOCK_STREAM
        && matches!(protocol, 0 | libc::IPPROTO_TCP | IPPROTO_MPTCP)
}

/// A socket option the library may set, in the order it sets them on a new socket:
/// the timings come before the user timeout, whose `auto` value is computed from them.
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

    /// The (level, name) pair setsockopt takes for this option.
    pub const fn level_and_name(self) -> (c_int, c_int) {
        match self {
            Opt::KeepAlive => (libc::SOL_SOCKET, libc::SO_KEEPALIVE),
            Opt::Idle => (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
            Opt::Interval => (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
            Opt::Count => (libc::IPPROTO_TCP, libc::TCP_KEEPCNT),
            Opt::UserTimeout => (libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT),
        }
    }

    /// The option a program's setsockopt(level, name) call sets, if it is one of ours.
    pub fn from_level_and_name(level: c_int, name: c_int) -> Option<Opt> {
        Opt::ALL
            .into_iter()
            .find(|opt| opt.level_and_name() == (level, name))
    }
}

impl fmt::Display for Opt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Opt::KeepAlive => "SO_KEEPALIVE",
            Opt::Idle => "TCP_KEEPIDLE",
            Opt::Interval => "TCP_KEEPINTVL",
            Opt::Count => "TCP_KEEPCNT",
            Opt::UserTimeout => "TCP_USER_TIMEOUT",
        })
    }
}

/// The value the user asked for an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    Value(c_int),
    /// TCP_USER_TIMEOUT = idle + interval * count of the socket, in milliseconds.
    AutoUserTimeout,
}

/// What the configuration asks for `opt` on a covered socket; `None` leaves the
/// option as it is (the kernel's default on a new socket).
pub fn wanted(config: &Config, opt: Opt) -> Option<Wanted> {
    if config.mode == Mode::Off {
        return None;
    }
    let value = match opt {
        Opt::KeepAlive => match config.mode {
            Mode::On | Mode::Force => 1,
            Mode::Skip | Mode::Off => return None,
        },
        Opt::Idle => config.idle?.into(),
        Opt::Interval => config.interval?.into(),
        Opt::Count => config.count?.into(),
        Opt::UserTimeout => match config.user_timeout? {
            UserTimeout::Off => 0,
            UserTimeout::Millis(ms) => ms as c_int, // at most i32::MAX, by the parser
            UserTimeout::Auto => return Some(Wanted::AutoUserTimeout),
        },
    };
    Some(Wanted::Value(value))
}

/// The value to put in place of a program's own setsockopt(level, name), or `None`
/// to let the program's call through. Only KEEPALIVE=force overrides, and only the
/// options the user configured.
pub fn forced(config: &Config, opt: Opt) -> Option<Wanted> {
    if config.mode == Mode::Force {
        wanted(config, opt)
    } else {
        None
    }
}

/// Whether a program's change of `opt` must be followed by a new user timeout:
/// `auto` is idle + interval × count of the socket, whoever set them.
pub fn auto_follows(config: &Config, opt: Opt) -> bool {
    config.mode != Mode::Off
        && config.user_timeout == Some(UserTimeout::Auto)
        && matches!(opt, Opt::Idle | Opt::Interval | Opt::Count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keepalive_config::LogLevel;

    const SOCK_RAW: c_int = libc::SOCK_RAW;

    #[test]
    fn tcp_sockets_are_covered_whatever_their_flags() {
        for domain in [libc::AF_INET, libc::AF_INET6] {
            for flags in [
                0,
                libc::SOCK_CLOEXEC,
                libc::SOCK_NONBLOCK,
                libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            ] {
                for protocol in [0, libc::IPPROTO_TCP, IPPROTO_MPTCP] {
                    assert!(is_tcp(domain, libc::SOCK_STREAM | flags, protocol));
                }
            }
        }
    }

    #[test]
    fn everything_else_is_left_alone() {
        assert!(!is_tcp(libc::AF_INET, libc::SOCK_DGRAM, 0));
        assert!(!is_tcp(libc::AF_INET, SOCK_RAW, libc::IPPROTO_TCP));
        assert!(!is_tcp(libc::AF_INET, libc::SOCK_SEQPACKET, 0));
        assert!(!is_tcp(
            libc::AF_INET6,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            0
        ));
        assert!(!is_tcp(libc::AF_UNIX, libc::SOCK_STREAM, 0));
        assert!(!is_tcp(libc::AF_NETLINK, libc::SOCK_STREAM, 0));
        assert!(!is_tcp(
            libc::AF_INET,
            libc::SOCK_STREAM,
            libc::IPPROTO_SCTP
        ));
        assert!(!is_tcp(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_UDP));
    }

    #[test]
    fn raw_sockets_reporting_protocol_tcp_are_left_alone() {
        // What SO_DOMAIN, SO_TYPE and SO_PROTOCOL report for socket(AF_INET*, SOCK_RAW,
        // IPPROTO_TCP): the protocol alone would say TCP.
        for domain in [libc::AF_INET, libc::AF_INET6] {
            assert!(!is_tcp(domain, SOCK_RAW, libc::IPPROTO_TCP));
            assert!(is_tcp(domain, libc::SOCK_STREAM, libc::IPPROTO_TCP));
        }
    }

    #[test]
    fn a_program_call_is_ours_only_for_the_five_options() {
        assert_eq!(
            Opt::from_level_and_name(libc::SOL_SOCKET, libc::SO_KEEPALIVE),
            Some(Opt::KeepAlive)
        );
        assert_eq!(
            Opt::from_level_and_name(libc::IPPROTO_TCP, libc::TCP_KEEPCNT),
            Some(Opt::Count)
        );
        assert_eq!(
            Opt::from_level_and_name(libc::IPPROTO_TCP, libc::TCP_NODELAY),
            None
        );
        assert_eq!(
            Opt::from_level_and_name(libc::SOL_SOCKET, libc::TCP_KEEPIDLE),
            None
        );
        assert_eq!(
            Opt::from_level_and_name(libc::IPPROTO_TCP, libc::SO_KEEPALIVE),
            None
        );
    }

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
            assert_eq!(wanted(&c, Opt::KeepAlive), Some(Wanted::Value(1)));
            assert_eq!(wanted(&c, Opt::Idle), Some(Wanted::Value(60)));
            assert_eq!(wanted(&c, Opt::Interval), None);
            assert_eq!(wanted(&c, Opt::Count), Some(Wanted::Value(3)));
            assert_eq!(wanted(&c, Opt::UserTimeout), Some(Wanted::AutoUserTimeout));
        }
    }

    #[test]
    fn skip_leaves_so_keepalive_to_the_program() {
        let c = config(Mode::Skip);
        assert_eq!(wanted(&c, Opt::KeepAlive), None);
        assert_eq!(wanted(&c, Opt::Idle), Some(Wanted::Value(60)));
    }

    #[test]
    fn off_touches_nothing() {
        let c = config(Mode::Off);
        assert!(Opt::ALL.iter().all(|&opt| wanted(&c, opt).is_none()));
    }

    #[test]
    fn user_timeout_values() {
        let mut c = config(Mode::On);
        c.user_timeout = Some(UserTimeout::Off);
        assert_eq!(wanted(&c, Opt::UserTimeout), Some(Wanted::Value(0)));
        c.user_timeout = Some(UserTimeout::Millis(i32::MAX as u32));
        assert_eq!(wanted(&c, Opt::UserTimeout), Some(Wanted::Value(i32::MAX)));
        c.user_timeout = None;
        assert_eq!(wanted(&c, Opt::UserTimeout), None);
    }

    #[test]
    fn an_auto_user_timeout_follows_the_timings_only() {
        let c = config(Mode::On);
        assert!(
            auto_follows(&c, Opt::Idle)
                && auto_follows(&c, Opt::Interval)
                && auto_follows(&c, Opt::Count)
        );
        assert!(!auto_follows(&c, Opt::KeepAlive) && !auto_follows(&c, Opt::UserTimeout));
        assert!(!auto_follows(&config(Mode::Off), Opt::Idle));
        let fixed = Config {
            user_timeout: Some(UserTimeout::Millis(5000)),
            ..c
        };
        assert!(!auto_follows(&fixed, Opt::Idle));
    }

    #[test]
    fn only_force_overrides_the_program() {
        assert_eq!(
            forced(&config(Mode::Force), Opt::Idle),
            Some(Wanted::Value(60))
        );
        assert_eq!(
            forced(&config(Mode::Force), Opt::KeepAlive),
            Some(Wanted::Value(1))
        );
        assert_eq!(forced(&config(Mode::Force), Opt::Interval), None);
        for mode in [Mode::On, Mode::Skip, Mode::Off] {
            assert!(
                Opt::ALL
                    .iter()
                    .all(|&opt| forced(&config(mode), opt).is_none())
            );
        }
    }
}
