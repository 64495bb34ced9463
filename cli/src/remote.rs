//! Another process's sockets, reached through pidfd_getfd: the duplicate shares the
//! target's open socket, so getsockopt reads and setsockopt changes the very socket
//! the target uses.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use keepalive_config::{Config, Opt, Wanted};
use rustix::net::{AddressFamily, SocketType, ipproto, sockopt};
use rustix::process::{Pid, PidfdFlags, PidfdGetfdFlags, pidfd_getfd, pidfd_open};
use serde::Serialize;

use crate::args::Timings;

/// A handle on a running process that stays valid even if its PID is reused.
pub struct Target(OwnedFd);

impl Target {
    pub fn open(pid: i32) -> io::Result<Target> {
        let pid = Pid::from_raw(pid).ok_or(io::ErrorKind::InvalidInput)?;
        Ok(Target(pidfd_open(pid, PidfdFlags::empty())?))
    }

    /// A duplicate of the target's descriptor `fd`; needs the right to ptrace it.
    pub fn duplicate(&self, fd: i32) -> io::Result<OwnedFd> {
        Ok(pidfd_getfd(&self.0, fd, PidfdGetfdFlags::empty())?)
    }
}

/// Which TCP a socket speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Mptcp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Mptcp => "mptcp",
        }
    }
}

/// `Some` for a TCP or MPTCP stream socket over IPv4 or IPv6, the ones keepalive
/// applies to; `None` for anything else (UDP, Unix, raw, ...).
pub fn tcp_protocol(socket: impl AsFd) -> io::Result<Option<(Protocol, &'static str)>> {
    let family = match sockopt::socket_domain(&socket)? {
        AddressFamily::INET => "ipv4",
        AddressFamily::INET6 => "ipv6",
        _ => return Ok(None),
    };
    if sockopt::socket_type(&socket)? != SocketType::STREAM {
        return Ok(None);
    }
    Ok(match sockopt::socket_protocol(&socket)? {
        Some(p) if p == ipproto::TCP => Some((Protocol::Tcp, family)),
        Some(p) if p == ipproto::MPTCP => Some((Protocol::Mptcp, family)),
        _ => None,
    })
}

/// The keepalive settings the kernel holds for a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Options {
    pub keepalive: bool,
    pub idle_s: u32,
    pub interval_s: u32,
    pub count: u32,
    /// `None` where the protocol has no TCP_USER_TIMEOUT (MPTCP).
    pub user_timeout_ms: Option<u32>,
}

impl Options {
    pub fn read(socket: impl AsFd) -> io::Result<Options> {
        Ok(Options {
            keepalive: sockopt::socket_keepalive(&socket)?,
            idle_s: secs(sockopt::tcp_keepidle(&socket)?),
            interval_s: secs(sockopt::tcp_keepintvl(&socket)?),
            count: sockopt::tcp_keepcnt(&socket)?,
            user_timeout_ms: unless_unsupported(sockopt::tcp_user_timeout(&socket))?,
        })
    }
}

/// What `apply` sets on a socket: SO_KEEPALIVE on, and of the rest only what was asked
/// for. A timing the socket never had set follows the namespace's sysctl, read by the
/// kernel each time it arms the timer; writing back the value read would freeze it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Writes {
    pub idle_s: Option<u32>,
    pub interval_s: Option<u32>,
    pub count: Option<u32>,
    /// Never for a protocol without TCP_USER_TIMEOUT (MPTCP).
    pub user_timeout_ms: Option<u32>,
}

impl Writes {
    /// The writes for `wanted` on a socket that holds `now`. `auto` is the time
    /// keepalive takes to give up on a silent peer with the timings after the change,
    /// as the library computes it.
    pub fn plan(now: &Options, wanted: &Timings) -> Writes {
        let mut writes = Writes {
            idle_s: wanted.idle.map(u32::from),
            interval_s: wanted.interval.map(u32::from),
            count: wanted.count.map(u32::from),
            user_timeout_ms: None,
        };
        let timings = writes.outcome(now);
        if let (Some(timeout), Some(_)) = (wanted.user_timeout, now.user_timeout_ms) {
            let config = Config {
                user_timeout: Some(timeout),
                ..Config::DEFAULT
            };
            writes.user_timeout_ms = match config.wanted(Opt::UserTimeout) {
                Some(Wanted::Value(ms)) => u32::try_from(ms).ok(),
                Some(Wanted::AutoUserTimeout) => Some(keepalive_config::auto_user_timeout_ms(
                    timings.idle_s,
                    timings.interval_s,
                    timings.count,
                )),
                None => None,
            };
        }
        writes
    }

    /// What a socket holding `now` holds once the writes are made.
    pub fn outcome(&self, now: &Options) -> Options {
        Options {
            keepalive: true,
            idle_s: self.idle_s.unwrap_or(now.idle_s),
            interval_s: self.interval_s.unwrap_or(now.interval_s),
            count: self.count.unwrap_or(now.count),
            user_timeout_ms: self.user_timeout_ms.or(now.user_timeout_ms),
        }
    }

    /// The socket options written, by their C names, in the order `write` sets them.
    pub fn names(&self) -> Vec<&'static str> {
        let given = [
            ("TCP_KEEPIDLE", self.idle_s.is_some()),
            ("TCP_KEEPINTVL", self.interval_s.is_some()),
            ("TCP_KEEPCNT", self.count.is_some()),
            ("SO_KEEPALIVE", true),
            ("TCP_USER_TIMEOUT", self.user_timeout_ms.is_some()),
        ];
        given
            .into_iter()
            .filter_map(|(name, set)| set.then_some(name))
            .collect()
    }

    /// Makes the writes: the timings first, so that turning keepalive on arms the
    /// timer with the new idle time.
    pub fn write(&self, socket: impl AsFd) -> io::Result<()> {
        if let Some(idle) = self.idle_s {
            sockopt::set_tcp_keepidle(&socket, Duration::from_secs(idle.into()))?;
        }
        if let Some(interval) = self.interval_s {
            sockopt::set_tcp_keepintvl(&socket, Duration::from_secs(interval.into()))?;
        }
        if let Some(count) = self.count {
            sockopt::set_tcp_keepcnt(&socket, count)?;
        }
        sockopt::set_socket_keepalive(&socket, true)?;
        if let Some(ms) = self.user_timeout_ms {
            sockopt::set_tcp_user_timeout(&socket, ms)?;
        }
        Ok(())
    }
}

fn secs(duration: Duration) -> u32 {
    u32::try_from(duration.as_secs()).unwrap_or(u32::MAX)
}

fn unless_unsupported(result: rustix::io::Result<u32>) -> io::Result<Option<u32>> {
    match result {
        Ok(value) => Ok(Some(value)),
        // MPTCP refuses it with EOPNOTSUPP (getsockopt) or ENOPROTOOPT (setsockopt).
        Err(rustix::io::Errno::NOPROTOOPT | rustix::io::Errno::OPNOTSUPP) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keepalive_config::UserTimeout;

    const BEFORE: Options = Options {
        keepalive: false,
        idle_s: 7200,
        interval_s: 75,
        count: 9,
        user_timeout_ms: Some(0),
    };

    #[test]
    fn only_the_timings_asked_for_are_written_and_keepalive_is_turned_on() {
        let wanted = Timings {
            idle: Some(60),
            ..Timings::default()
        };
        let writes = Writes::plan(&BEFORE, &wanted);
        assert_eq!(
            writes,
            Writes {
                idle_s: Some(60),
                ..Writes::default()
            }
        );
        assert_eq!(writes.names(), ["TCP_KEEPIDLE", "SO_KEEPALIVE"]);
        assert_eq!(
            writes.outcome(&BEFORE),
            Options {
                keepalive: true,
                idle_s: 60,
                ..BEFORE
            }
        );
    }

    #[test]
    fn auto_user_timeout_follows_the_timings_after_the_change() {
        let wanted = Timings {
            idle: Some(10),
            interval: Some(5),
            count: None,
            user_timeout: Some(UserTimeout::Auto),
        };
        let writes = Writes::plan(&BEFORE, &wanted);
        assert_eq!(writes.user_timeout_ms, Some((10 + 5 * 9) * 1000));
        assert_eq!(writes.count, None, "count only read, not written");
        assert_eq!(
            writes.names(),
            [
                "TCP_KEEPIDLE",
                "TCP_KEEPINTVL",
                "SO_KEEPALIVE",
                "TCP_USER_TIMEOUT"
            ]
        );
    }

    #[test]
    fn a_protocol_without_user_timeout_gets_none_written() {
        let mptcp = Options {
            user_timeout_ms: None,
            ..BEFORE
        };
        let wanted = Timings {
            user_timeout: Some(UserTimeout::Millis(5)),
            ..Timings::default()
        };
        let writes = Writes::plan(&mptcp, &wanted);
        assert_eq!(writes, Writes::default());
        assert_eq!(writes.outcome(&mptcp).user_timeout_ms, None);
    }
}
