//! What /proc says about a process's sockets that the sockets cannot say themselves:
//! which descriptors are sockets (/proc/PID/fd/N -> socket:[INODE]), and the timer
//! the kernel has pending on each TCP socket of the network namespace the process is
//! in now (/proc/PID/net/tcp and tcp6). State and addresses come from the sockets.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr};

/// A pending timer on a socket, as the `tr` and `tm->when` columns report it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timer {
    pub kind: TimerKind,
    /// Seconds until it fires (clock-tick resolution).
    pub expires_in: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimerKind {
    /// Retransmission or loss probe.
    Retransmit,
    /// sk_timer: the keepalive timer (which also times FIN_WAIT2 out).
    Keepalive,
    TimeWait,
    ZeroWindowProbe,
}

/// Whether process `pid` has exited and is a zombie (or dead) waiting to be reaped:
/// the state in /proc/PID/stat, after the command name in parentheses.
pub fn has_exited(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| matches!(rest.trim_start().chars().next(), Some('Z' | 'X')))
    })
}

/// The socket descriptors of process `pid`, as (fd, inode).
pub fn socket_fds(pid: i32) -> io::Result<Vec<(i32, u64)>> {
    let mut sockets = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let entry = entry?;
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // A descriptor closed since the listing has no link any more: not an error.
        // Any other failure (EACCES without the right to trace the process) is one.
        let target = match std::fs::read_link(entry.path()) {
            Ok(target) => target,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if let Some(inode) = socket_inode(&target.to_string_lossy()) {
            sockets.push((fd, inode));
        }
    }
    sockets.sort_unstable();
    Ok(sockets)
}

fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The pending timer of each TCP socket of `pid`'s current network namespace, IPv4
/// and IPv6, by inode. Only sockets in the kernel's listening and connection tables
/// of that namespace appear: not closed ones, nor those of another namespace.
pub fn tcp_table(pid: i32, ticks_per_second: u64) -> io::Result<HashMap<u64, Option<Timer>>> {
    Ok(tcp_files(pid)?
        .iter()
        .flat_map(|text| text.lines().skip(1))
        .filter_map(|line| parse_line(line, ticks_per_second))
        .collect())
}

/// The local addresses that TCP listeners of `pid`'s current network namespace hold,
/// IPv4 and IPv6 (an unspecified address for a listener on all of them): a connection
/// on one of them was accepted, as far as user space can tell (the kernel keeps no
/// flag for it).
pub fn listening(pid: i32) -> io::Result<HashSet<SocketAddr>> {
    Ok(tcp_files(pid)?
        .iter()
        .flat_map(|text| text.lines().skip(1))
        .filter_map(listening_address)
        .collect())
}

/// /proc/PID/net/tcp and tcp6, as text.
fn tcp_files(pid: i32) -> io::Result<Vec<String>> {
    let mut texts = Vec::new();
    for file in ["tcp", "tcp6"] {
        match std::fs::read_to_string(format!("/proc/{pid}/net/{file}")) {
            Ok(text) => texts.push(text),
            // A kernel without IPv6 has no tcp6 file.
            Err(e) if e.kind() == io::ErrorKind::NotFound && file == "tcp6" => {}
            Err(e) => return Err(e),
        }
    }
    Ok(texts)
}

/// The local address of a line in state LISTEN (0A): `0100007F:1F90` is 127.0.0.1:8080,
/// the address's 32-bit words in the machine's byte order.
fn listening_address(line: &str) -> Option<SocketAddr> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if *fields.get(3)? != "0A" {
        return None;
    }
    let (address, port) = fields.get(1)?.rsplit_once(':')?;
    let words = (0..address.len() / 8)
        .map(|i| u32::from_str_radix(address.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<Vec<u32>>>()?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let ip = match bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?),
        _ => return None,
    };
    Some(SocketAddr::new(ip, u16::from_str_radix(port, 16).ok()?))
}

/// Parses `sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...`; inode 0
/// (TIME_WAIT and request sockets, owned by no descriptor) is dropped.
fn parse_line(line: &str, ticks_per_second: u64) -> Option<(u64, Option<Timer>)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let inode: u64 = fields.get(9)?.parse().ok()?;
    if inode == 0 {
        return None;
    }
    let (tr, when) = fields.get(5)?.split_once(':')?;
    let timer = timer(
        u8::from_str_radix(tr, 16).ok()?,
        u64::from_str_radix(when, 16).ok()?,
        ticks_per_second,
    );
    Some((inode, timer))
}

fn timer(active: u8, when: u64, ticks_per_second: u64) -> Option<Timer> {
    let kind = match active {
        1 => TimerKind::Retransmit,
        2 => TimerKind::Keepalive,
        3 => TimerKind::TimeWait,
        4 => TimerKind::ZeroWindowProbe,
        _ => return None,
    };
    Some(Timer {
        kind,
        expires_in: when as f64 / ticks_per_second.max(1) as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv4_line_gives_inode_and_keepalive_timer() {
        let line = "   1: 0100007F:A0F4 0100007F:1F90 01 00000000:00000000 02:00000BB8 00000000     0        0 4242 1 0000000000000000 20 4 30 10 -1";
        let (inode, timer) = parse_line(line, 100).unwrap();
        assert_eq!(inode, 4242);
        assert_eq!(
            timer,
            Some(Timer {
                kind: TimerKind::Keepalive,
                expires_in: 30.0
            })
        );
    }

    #[test]
    fn listeners_give_their_local_ports() {
        let listener = "   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0";
        let connection = "   1: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 02:000AFBE1 00000000     0        0 4243 1 0000000000000000 20 4 30 10 -1";
        assert_eq!(
            listening_address(listener),
            Some("0.0.0.0:8080".parse().unwrap())
        );
        assert_eq!(listening_address(connection), None);
        let loopback6 = "   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4244 1 0000000000000000 100 0 0 10 0";
        assert_eq!(
            listening_address(loopback6),
            Some("[::1]:8080".parse().unwrap())
        );
    }

    #[test]
    fn an_ipv6_listener_has_no_timer() {
        let line = "   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1 0000000000000000 100 0 0 10 0";
        assert_eq!(parse_line(line, 100), Some((77, None)));
    }

    #[test]
    fn sockets_owned_by_no_descriptor_are_dropped() {
        let line = "   2: 0100007F:A0F4 0100007F:1F90 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000";
        assert_eq!(parse_line(line, 100), None);
    }

    #[test]
    fn only_socket_links_are_sockets() {
        assert_eq!(socket_inode("socket:[123]"), Some(123));
        assert_eq!(socket_inode("pipe:[123]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
    }
}
