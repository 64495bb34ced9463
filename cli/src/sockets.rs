//! The TCP sockets of a running process: /proc names them, pidfd_getfd reaches them.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};

use rustix::io::Errno;
use serde::Serialize;

use crate::procfs::{self, TcpEntry, Timer, TimerKind};
use crate::remote::{Options, Protocol, Target, tcp_protocol};

/// A process and its TCP sockets.
#[derive(Serialize)]
pub struct Process {
    pub pid: i32,
    pub command: String,
    pub sockets: Vec<Socket>,
    /// Sockets that could not be read, so are missing from `sockets`.
    pub left_out: Vec<LeftOut>,
}

/// A socket left out, and why.
#[derive(Serialize)]
pub struct LeftOut {
    pub fd: i32,
    pub error: String,
}

/// One TCP socket of a process, with a duplicate of it to read or change it through.
#[derive(Serialize)]
pub struct Socket {
    pub fd: i32,
    pub inode: u64,
    pub protocol: Protocol,
    pub family: &'static str,
    pub state: &'static str,
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    #[serde(flatten)]
    pub options: Options,
    /// Seconds until the keepalive timer fires, where it runs on a connection.
    pub next_probe_s: Option<f64>,
    /// Whatever timer the kernel has pending, keepalive or not.
    pub timer: Option<TimerKind>,
    #[serde(skip)]
    pub handle: OwnedFd,
}

/// Why a process could not be looked at, worded for the person running the command.
pub fn explain(pid: i32, error: &io::Error) -> String {
    let errno = error.raw_os_error().map(Errno::from_raw_os_error);
    match errno {
        Some(Errno::PERM | Errno::ACCESS) => format!(
            "process {pid}: permission denied: reaching another process's sockets needs the right \
             to trace it: run as root or with CAP_SYS_PTRACE (and check \
             /proc/sys/kernel/yama/ptrace_scope)"
        ),
        Some(Errno::SRCH | Errno::NOENT) => format!("process {pid}: no such process"),
        Some(Errno::NOSYS) => format!(
            "process {pid}: this kernel lacks pidfd_open or pidfd_getfd (Linux 5.6 or later is needed)"
        ),
        _ => format!("process {pid}: {error}"),
    }
}

/// Every TCP and MPTCP socket process `pid` holds a descriptor for.
pub fn of_process(pid: i32) -> io::Result<Process> {
    let target = Target::open(pid)?;
    let fds = procfs::socket_fds(pid)?;
    let table = procfs::tcp_table(pid, rustix::param::clock_ticks_per_second())?;
    let command = std::fs::read_to_string(format!("/proc/{pid}/comm"))?
        .trim_end()
        .to_string();
    let (mut sockets, mut left_out) = (Vec::new(), Vec::new());
    for (fd, inode) in fds {
        let Some(handle) = duplicate(&target, fd, inode)? else {
            continue;
        };
        match describe(fd, inode, handle, table.get(&inode)) {
            Ok(Some(socket)) => sockets.push(socket),
            Ok(None) => {}
            // One odd socket must not hide the others; say which one was left out.
            Err(e) => {
                log::warn!("process {pid}: fd {fd} left out: {e}");
                let error = e.to_string();
                left_out.push(LeftOut { fd, error });
            }
        }
    }
    Ok(Process {
        pid,
        command,
        sockets,
        left_out,
    })
}

/// The socket, if it is a TCP or MPTCP one.
fn describe(
    fd: i32,
    inode: u64,
    handle: OwnedFd,
    entry: Option<&TcpEntry>,
) -> io::Result<Option<Socket>> {
    let Some((protocol, family)) = tcp_protocol(&handle)? else {
        return Ok(None);
    };
    log::debug!("fd {fd}: {} socket, inode {inode}", protocol.name());
    let options = Options::read(&handle)?;
    Ok(Some(match entry {
        Some(entry) => listed(fd, inode, protocol, family, options, entry, handle),
        None => unlisted(fd, inode, protocol, family, options, handle),
    }))
}

/// The target's descriptor `fd`, if it still is the socket /proc showed: it may have
/// been closed, or closed and reused, since the listing.
fn duplicate(target: &Target, fd: i32, inode: u64) -> io::Result<Option<OwnedFd>> {
    let handle = match target.duplicate(fd) {
        Ok(handle) => handle,
        Err(e) if e.raw_os_error() == Some(Errno::BADF.raw_os_error()) => return Ok(None),
        Err(e) => return Err(e),
    };
    let same = rustix::fs::fstat(&handle)?.st_ino == inode;
    Ok(same.then_some(handle))
}

fn listed(
    fd: i32,
    inode: u64,
    protocol: Protocol,
    family: &'static str,
    options: Options,
    entry: &TcpEntry,
    handle: OwnedFd,
) -> Socket {
    let next_probe_s = entry
        .timer
        .and_then(|t| keepalive_due(t, entry.state, &options));
    Socket {
        fd,
        inode,
        protocol,
        family,
        state: entry.state,
        local: Some(entry.local),
        remote: (entry.state != "LISTEN").then_some(entry.remote),
        options,
        next_probe_s,
        timer: entry.timer.map(|t| t.kind),
        handle,
    }
}

/// The kernel's tables list only listening and connecting or connected TCP sockets;
/// an unlisted TCP socket is closed (created, maybe bound, never connected). MPTCP
/// sockets are never listed themselves (their subflows are), so their state is unknown.
fn unlisted(
    fd: i32,
    inode: u64,
    protocol: Protocol,
    family: &'static str,
    options: Options,
    handle: OwnedFd,
) -> Socket {
    Socket {
        fd,
        inode,
        protocol,
        family,
        state: if protocol == Protocol::Tcp {
            "CLOSE"
        } else {
            "UNKNOWN"
        },
        local: rustix::net::getsockname(handle.as_fd())
            .ok()
            .and_then(address),
        remote: rustix::net::getpeername(handle.as_fd())
            .ok()
            .flatten()
            .and_then(address),
        options,
        next_probe_s: None,
        timer: None,
        handle,
    }
}

fn address(any: rustix::net::SocketAddrAny) -> Option<SocketAddr> {
    SocketAddr::try_from(any).ok()
}

/// The keepalive timer also times out FIN_WAIT2; it means a probe is due only on a
/// connection that has keepalive on.
fn keepalive_due(timer: Timer, state: &str, options: &Options) -> Option<f64> {
    let probing = timer.kind == TimerKind::Keepalive && options.keepalive && state == "ESTABLISHED";
    probing.then_some(timer.expires_in)
}
