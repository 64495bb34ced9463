//! Pure decisions: which sockets the library covers, which options it sets on them,
//! and what value each gets. No system calls here, so all of it is unit-tested.

use core::ffi::c_int;

use keepalive_config::{Config, Mode, UserTimeout};
pub use keepalive_config::{Opt, Wanted};

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

/// The (level, name) pair setsockopt takes for an option.
pub const fn level_and_name(opt: Opt) -> (c_int, c_int) {
    match opt {
        Opt::KeepAlive => (libc::SOL_SOCKET, libc::SO_KEEPALIVE),
        Opt::Idle => (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
        Opt::Interval => (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
        Opt::Count => (libc::IPPROTO_TCP, libc::TCP_KEEPCNT),
        Opt::UserTimeout => (libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT),
    }
}

/// The option a program's setsockopt(level, name) call sets, if it is one of ours.
pub fn opt_of(level: c_int, name: c_int) -> Option<Opt> {
    Opt::ALL
        .into_iter()
        .find(|&opt| level_and_name(opt) == (level, name))
}

/// The value to put in place of a program's own setsockopt(level, name), or `None`
/// to let the program's call through. Only KEEPALIVE=force overrides, and only the
/// options the user configured.
pub fn forced(config: &Config, opt: Opt) -> Option<Wanted> {
    if config.mode == Mode::Force {
        config.wanted(opt)
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
            opt_of(libc::SOL_SOCKET, libc::SO_KEEPALIVE),
            Some(Opt::KeepAlive)
        );
        assert_eq!(
            opt_of(libc::IPPROTO_TCP, libc::TCP_KEEPCNT),
            Some(Opt::Count)
        );
        assert_eq!(opt_of(libc::IPPROTO_TCP, libc::TCP_NODELAY), None);
        assert_eq!(opt_of(libc::SOL_SOCKET, libc::TCP_KEEPIDLE), None);
        assert_eq!(opt_of(libc::IPPROTO_TCP, libc::SO_KEEPALIVE), None);
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
