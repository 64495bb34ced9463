//! What /proc says about a process's sockets: which descriptors are sockets
//! (/proc/PID/fd/N -> socket:[INODE]), and the state, addresses and timer of each TCP
//! socket in the process's own network namespace (/proc/PID/net/tcp and tcp6).

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// One line of /proc/PID/net/tcp or tcp6.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpEntry {
    pub state: &'static str,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub timer: Option<Timer>,
}

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

/// The socket descriptors of process `pid`, as (fd, inode).
pub fn socket_fds(pid: i32) -> io::Result<Vec<(i32, u64)>> {
    let mut sockets = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let entry = entry?;
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // A descriptor closed since the listing has no link any more: not an error.
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
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

/// The TCP sockets of `pid`'s network namespace, IPv4 and IPv6, by inode. Only
/// sockets in the kernel's listening and connection tables appear: a socket that is
/// neither listening nor connecting or connected (state CLOSE) is not listed.
pub fn tcp_table(pid: i32, ticks_per_second: u64) -> io::Result<HashMap<u64, TcpEntry>> {
    let mut table = HashMap::new();
    for file in ["tcp", "tcp6"] {
        let text = match std::fs::read_to_string(format!("/proc/{pid}/net/{file}")) {
            Ok(text) => text,
            // A kernel without IPv6 has no tcp6 file.
            Err(e) if e.kind() == io::ErrorKind::NotFound && file == "tcp6" => continue,
            Err(e) => return Err(e),
        };
        table.extend(
            text.lines()
                .skip(1)
                .filter_map(|line| parse_line(line, ticks_per_second)),
        );
    }
    Ok(table)
}

/// Parses `sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...`; inode 0
/// (TIME_WAIT and request sockets, owned by no descriptor) is dropped.
fn parse_line(line: &str, ticks_per_second: u64) -> Option<(u64, TcpEntry)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let inode: u64 = fields.get(9)?.parse().ok()?;
    if inode == 0 {
        return None;
    }
    let (tr, when) = fields.get(5)?.split_once(':')?;
    let entry = TcpEntry {
        state: state_name(u8::from_str_radix(fields.get(3)?, 16).ok()?),
        local: address(fields.get(1)?)?,
        remote: address(fields.get(2)?)?,
        timer: timer(
            u8::from_str_radix(tr, 16).ok()?,
            u64::from_str_radix(when, 16).ok()?,
            ticks_per_second,
        ),
    };
    Some((inode, entry))
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

/// `0100007F:1F90` (IPv4) or 32 hex digits (IPv6) and a port. The kernel prints each
/// 32-bit word of the address as a native-endian integer, the port in host order.
fn address(field: &str) -> Option<SocketAddr> {
    let (ip, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words = (0..ip.len() / 8)
        .map(|i| {
            u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16)
                .ok()
                .map(u32::to_ne_bytes)
        })
        .collect::<Option<Vec<[u8; 4]>>>()?;
    let bytes: Vec<u8> = words.concat();
    let ip = match bytes.len() {
        4 => Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?).into(),
        16 => Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?).into(),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv4_line_gives_state_addresses_and_keepalive_timer() {
        let line = "   1: 0100007F:A0F4 0100007F:1F90 01 00000000:00000000 02:00000BB8 00000000     0        0 4242 1 0000000000000000 20 4 30 10 -1";
        let (inode, entry) = parse_line(line, 100).unwrap();
        assert_eq!(inode, 4242);
        assert_eq!(entry.state, "ESTABLISHED");
        assert_eq!(entry.local, "127.0.0.1:41204".parse().unwrap());
        assert_eq!(entry.remote, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            entry.timer,
            Some(Timer {
                kind: TimerKind::Keepalive,
                expires_in: 30.0
            })
        );
    }

    #[test]
    fn an_ipv6_loopback_listener_is_decoded() {
        let line = "   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1 0000000000000000 100 0 0 10 0";
        let (_, entry) = parse_line(line, 100).unwrap();
        assert_eq!(entry.state, "LISTEN");
        assert_eq!(entry.local, "[::1]:8080".parse().unwrap());
        assert_eq!(entry.timer, None);
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
