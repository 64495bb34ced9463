//! The TCP sockets of a running process: /proc names them, pidfd_getfd reaches them,
//! and each duplicate says what it is (TCP_INFO, getsockname, getpeername) wherever
//! its network namespace is. Each duplicate is closed as soon as it has been read, so
//! a process with more sockets than this command may open is still handled whole.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use rustix::io::Errno;
use serde::Serialize;

use crate::procfs::{self, Timer, TimerKind};
use crate::remote::{Options, Protocol, Target, tcp_protocol};

/// A process and its TCP sockets.
#[derive(Serialize)]
pub struct Process {
    pub pid: i32,
    pub command: String,
    pub sockets: Vec<Socket>,
    /// Sockets that could not be read, so are missing from `sockets`.
    pub left_out: Vec<LeftOut>,
    /// The process itself, to reach a socket again (`apply`).
    #[serde(skip)]
    target: Target,
}

impl Process {
    /// A new duplicate of `socket`, or `None` if the process has closed that
    /// descriptor (or reused it for another file) since it was listed.
    pub fn reach(&self, socket: &Socket) -> io::Result<Option<OwnedFd>> {
        duplicate(&self.target, socket.fd, socket.inode)
    }
}

/// A socket left out, and why.
#[derive(Serialize)]
pub struct LeftOut {
    pub fd: i32,
    pub error: String,
}

/// One TCP socket of a process, as read through a duplicate of it.
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
}

/// Why a process could not be looked at, worded for the person running the command.
pub fn explain(pid: i32, error: &io::Error) -> String {
    let errno = error.raw_os_error().map(Errno::from_raw_os_error);
    match errno {
        Some(Errno::PERM | Errno::ACCESS) => format!(
            "process {pid}: permission denied: reaching another process's sockets needs the right \
             to trace it: run as root or with CAP_SYS_PTRACE{}",
            yama_hint(std::path::Path::new(YAMA_PTRACE_SCOPE).exists())
        ),
        Some(Errno::SRCH | Errno::NOENT) => format!("process {pid}: no such process"),
        Some(Errno::NOSYS) => format!(
            "process {pid}: this kernel lacks pidfd_open or pidfd_getfd (Linux 5.6 or later is needed)"
        ),
        _ => format!("process {pid}: {error}"),
    }
}

const YAMA_PTRACE_SCOPE: &str = "/proc/sys/kernel/yama/ptrace_scope";

/// Where the Yama security module is loaded, its setting may be what refuses.
fn yama_hint(yama: bool) -> String {
    if yama {
        format!(" (and check {YAMA_PTRACE_SCOPE})")
    } else {
        String::new()
    }
}

/// Every TCP and MPTCP socket process `pid` holds a descriptor for.
pub fn of_process(pid: i32) -> io::Result<Process> {
    let target = Target::open(pid)?;
    // A zombie still has its PID (so pidfd_open works) but no descriptors and no
    // network namespace any more: say so rather than "no such process".
    if procfs::has_exited(pid) {
        return Err(io::Error::other(
            "has exited and holds no sockets (a zombie its parent has not reaped yet)",
        ));
    }
    let fds = procfs::socket_fds(pid)?;
    // Only for the timers: the table lists the sockets of the namespace the process
    // is in now, which need not be the one its sockets were made in.
    let table = procfs::tcp_table(pid, rustix::param::clock_ticks_per_second())?;
    let command = std::fs::read_to_string(format!("/proc/{pid}/comm"))?
        .trim_end()
        .to_string();
    let (mut sockets, mut left_out) = (Vec::new(), Vec::new());
    for (fd, inode) in fds {
        let Some(handle) = duplicate(&target, fd, inode)? else {
            continue;
        };
        match describe(fd, inode, &handle, table.get(&inode)) {
            Ok(Some(socket)) => sockets.push(socket),
            Ok(None) => {}
            // One odd socket must not hide the others; say which one was left out.
            Err(e) => {
                log::warn!("process {pid}: fd {fd} left out: {e}");
                let error = e.to_string();
                left_out.push(LeftOut { fd, error });
            }
        }
        // `handle` is closed here: one duplicate open at a time.
    }
    Ok(Process {
        pid,
        command,
        sockets,
        left_out,
        target,
    })
}

/// The socket, if it is a TCP or MPTCP one.
fn describe(
    fd: i32,
    inode: u64,
    handle: &OwnedFd,
    listed: Option<&Option<Timer>>,
) -> io::Result<Option<Socket>> {
    let Some((protocol, family)) = tcp_protocol(handle)? else {
        return Ok(None);
    };
    log::debug!("fd {fd}: {} socket, inode {inode}", protocol.name());
    let options = Options::read(handle)?;
    let info = tcp_info(handle);
    let state = match &info {
        Some(info) => state_name(info.tcpi_state),
        None => "UNKNOWN",
    };
    // The kernel's own timer where /proc lists the socket; otherwise (the socket
    // lives in another namespace) the keepalive timer worked out from TCP_INFO.
    let (timer, next_probe_s) = match listed {
        Some(timer) => (
            timer.map(|t| t.kind),
            timer.and_then(|t| keepalive_due(t, state, &options)),
        ),
        None => {
            let next = info.and_then(|info| keepalive_from_info(&info, state, &options));
            (next.map(|_| TimerKind::Keepalive), next)
        }
    };
    Ok(Some(Socket {
        fd,
        inode,
        protocol,
        family,
        state,
        local: rustix::net::getsockname(handle.as_fd())
            .ok()
            .and_then(address),
        remote: rustix::net::getpeername(handle.as_fd())
            .ok()
            .flatten()
            .and_then(address),
        options,
        next_probe_s,
        timer,
    }))
}

/// The target's descriptor `fd`, if it still is the socket /proc showed: it may have
/// been closed, or closed and reused, since the listing.
pub fn duplicate(target: &Target, fd: i32, inode: u64) -> io::Result<Option<OwnedFd>> {
    let handle = match target.duplicate(fd) {
        Ok(handle) => handle,
        Err(e) if e.raw_os_error() == Some(Errno::BADF.raw_os_error()) => return Ok(None),
        Err(e) => return Err(e),
    };
    let same = rustix::fs::fstat(&handle)?.st_ino == inode;
    Ok(same.then_some(handle))
}

/// getsockopt(TCP_INFO): the socket's state and its recent activity, from the socket
/// itself. `None` where the protocol does not answer it.
fn tcp_info(socket: &OwnedFd) -> Option<libc::tcp_info> {
    let mut info = std::mem::MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is valid for writes of `len` bytes, and the kernel writes at most
    // `len` bytes and stores the length it wrote in `len`.
    let result = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    // SAFETY: zeroed is a valid tcp_info (plain integers); the kernel filled in a
    // prefix of it.
    (result == 0 && len > 0).then(|| unsafe { info.assume_init() })
}

/// The kernel's TCP state names (include/net/tcp_states.h), as ss prints them.
fn state_name(state: u8) -> &'static str {
    match state {
        1 => "ESTABLISHED",
        2 => "SYN-SENT",
        3 => "SYN-RECV",
        4 => "FIN-WAIT-1",
        5 => "FIN-WAIT-2",
        6 => "TIME-WAIT",
        7 => "CLOSE",
        8 => "CLOSE-WAIT",
        9 => "LAST-ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        12 => "NEW-SYN-RECV",
        _ => "UNKNOWN",
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

/// When the first keepalive probe is due, as the kernel reckons it: the idle time
/// after the last packet received (keepalive_time_elapsed), on an established
/// connection with keepalive on, nothing unacknowledged and no probe out yet. `None`
/// where that cannot be told from TCP_INFO alone.
fn keepalive_from_info(info: &libc::tcp_info, state: &str, options: &Options) -> Option<f64> {
    if !options.keepalive
        || state != "ESTABLISHED"
        || info.tcpi_unacked != 0
        || info.tcpi_probes != 0
    {
        return None;
    }
    let quiet_ms = info.tcpi_last_data_recv.min(info.tcpi_last_ack_recv);
    let idle_ms = u64::from(options.idle_s) * 1000;
    Some(idle_ms.saturating_sub(quiet_ms.into()) as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_yama_setting_is_named_only_where_yama_is() {
        assert_eq!(
            super::yama_hint(true),
            " (and check /proc/sys/kernel/yama/ptrace_scope)"
        );
        assert_eq!(super::yama_hint(false), "");
    }
}
