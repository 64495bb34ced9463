//! Another process's sockets, reached through pidfd_getfd: the duplicate shares the
//! target's open socket, so getsockopt reads and setsockopt changes the very socket
//! the target uses.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use keepalive_config::UserTimeout;
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

    /// What `apply` turns these settings into: keepalive on, the timings given,
    /// the rest as they are.
    pub fn with(self, wanted: &Timings) -> Options {
        let mut next = Options {
            keepalive: true,
            idle_s: wanted.idle.map_or(self.idle_s, u32::from),
            interval_s: wanted.interval.map_or(self.interval_s, u32::from),
            count: wanted.count.map_or(self.count, u32::from),
            user_timeout_ms: self.user_timeout_ms,
        };
        if let (Some(timeout), Some(_)) = (wanted.user_timeout, self.user_timeout_ms) {
            next.user_timeout_ms = Some(next.user_timeout_value(timeout));
        }
        next
    }

    /// TCP_USER_TIMEOUT for a requested value; `auto` is the time keepalive takes to
    /// give up on a silent peer, idle + interval × count, as the library computes it.
    fn user_timeout_value(&self, timeout: UserTimeout) -> u32 {
        match timeout {
            UserTimeout::Off => 0,
            UserTimeout::Millis(ms) => ms,
            UserTimeout::Auto => {
                keepalive_config::auto_user_timeout_ms(self.idle_s, self.interval_s, self.count)
            }
        }
    }

    /// Sets `target` on the socket: the timings first, so that turning keepalive on
    /// arms the timer with the new idle time.
    pub fn write(socket: impl AsFd, target: &Options) -> io::Result<()> {
        sockopt::set_tcp_keepidle(&socket, Duration::from_secs(target.idle_s.into()))?;
        sockopt::set_tcp_keepintvl(&socket, Duration::from_secs(target.interval_s.into()))?;
        sockopt::set_tcp_keepcnt(&socket, target.count)?;
        sockopt::set_socket_keepalive(&socket, target.keepalive)?;
        if let Some(ms) = target.user_timeout_ms {
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

    const BEFORE: Options = Options {
        keepalive: false,
        idle_s: 7200,
        interval_s: 75,
        count: 9,
        user_timeout_ms: Some(0),
    };

    #[test]
    fn apply_turns_keepalive_on_and_keeps_timings_not_given() {
        let wanted = Timings {
            idle: Some(60),
            ..Timings::default()
        };
        let after = BEFORE.with(&wanted);
        assert_eq!(
            after,
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
        assert_eq!(
            BEFORE.with(&wanted).user_timeout_ms,
            Some((10 + 5 * 9) * 1000)
        );
    }

    #[test]
    fn a_protocol_without_user_timeout_keeps_none() {
        let mptcp = Options {
            user_timeout_ms: None,
            ..BEFORE
        };
        let wanted = Timings {
            user_timeout: Some(UserTimeout::Millis(5)),
            ..Timings::default()
        };
        assert_eq!(mptcp.with(&wanted).user_timeout_ms, None);
    }
}
