//! The functions the library puts in front of the C library's: socket(), which
//! configures each new TCP socket, and setsockopt(), which keeps the user's values
//! under KEEPALIVE=force and keeps an `auto` user timeout in step with the timings.
//!
//! Both return exactly what the real call returns, with the errno it left, on success
//! and on failure: the library's own calls may fail (an MPTCP socket refuses
//! TCP_USER_TIMEOUT, a seccomp filter may refuse setsockopt), and such failures are
//! only logged at debug. errno is kept at the bottom, in `sys`: every call the library
//! makes for itself leaves errno as it found it, before the real call as well as after.

use core::ffi::{c_int, c_void};

use keepalive_config::{Config, LogLevel, Mode, auto_user_timeout_ms};

use crate::logger::log_at;
use crate::policy::{self, Opt, Wanted};
use crate::state;
use crate::sys;

/// socket(2), plus keepalive for TCP sockets.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    // The configuration first: when this call is the process's first read (from
    // another library's constructor), the logger must learn which file descriptor 2
    // is before the new socket can take that number.
    state::ensure_read();
    let fd = sys::real_socket(domain, ty, protocol);
    if fd >= 0 && policy::is_tcp(domain, ty, protocol) {
        configure_new_socket(fd);
    }
    fd
}

/// Kept out of socket() so that the path every other socket takes (UDP, AF_UNIX,
/// netlink) stays a few loads and compares, without this function's frame.
#[inline(never)]
fn configure_new_socket(fd: c_int) {
    let config = state::config();
    if config.mode != Mode::Off {
        configure(fd, &config);
    }
}

/// setsockopt(2). The program's call always reaches the kernel as it was made, and
/// its result is what the program gets. When it succeeded on a TCP socket, the
/// library may follow up: under KEEPALIVE=force it puts back the user's value of an
/// option the user configured, and with KEEPALIVE_USER_TIMEOUT=auto it recomputes the
/// user timeout from the timings the program just changed.
///
/// # Safety
/// As setsockopt(2): `value` must be valid for reads of `len` bytes.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    value: *const c_void,
    len: libc::socklen_t,
) -> c_int {
    let follow_up = policy::opt_of(level, name).and_then(|opt| FollowUp::plan(fd, opt));
    // SAFETY: the program's own arguments, passed on unchanged.
    let result = unsafe { sys::real_setsockopt(fd, level, name, value, len) };
    if result == 0 {
        if let Some(follow_up) = follow_up {
            follow_up.apply(fd);
        }
    }
    result
}

/// Sets every option the configuration asks for on a new TCP socket.
fn configure(fd: c_int, config: &Config) {
    let configured = [
        config.idle.map(u32::from),
        config.interval.map(u32::from),
        config.count.map(u32::from),
    ];
    for opt in Opt::ALL {
        let value = match config.wanted(opt) {
            None => continue,
            Some(Wanted::Value(value)) => Some(value),
            Some(Wanted::AutoUserTimeout) => auto_user_timeout(fd, configured),
        };
        set(fd, opt, value);
    }
}

/// What the library does after a program's successful setsockopt of one of its options.
#[derive(Clone, Copy)]
enum FollowUp {
    /// KEEPALIVE=force: put the user's value back.
    Force(Opt, Wanted),
    /// KEEPALIVE_USER_TIMEOUT=auto: the program changed a timing, so the user timeout
    /// the library set must follow it.
    RefreshAutoUserTimeout,
}

impl FollowUp {
    /// Decides before the program's call, while the socket still holds the values
    /// the library set. Only the sockets socket() configures are followed up, decided
    /// by the same test on the socket's domain, type and protocol as the kernel reports
    /// them: SO_KEEPALIVE also exists on others, and a raw socket reports protocol TCP.
    /// An `auto` user timeout is refreshed only while it is still the library's, not
    /// one the program set itself.
    fn plan(fd: c_int, opt: Opt) -> Option<FollowUp> {
        let config = state::config();
        let follow_up = match policy::forced(&config, opt) {
            Some(wanted) => FollowUp::Force(opt, wanted),
            None if policy::auto_follows(&config, opt) => FollowUp::RefreshAutoUserTimeout,
            None => return None,
        };
        let protocol = sys::get_int(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL)?;
        let ty = sys::get_int(fd, libc::SOL_SOCKET, libc::SO_TYPE)?;
        let domain = sys::get_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)?;
        if !policy::is_tcp(domain, ty, protocol) {
            return None;
        }
        if let FollowUp::RefreshAutoUserTimeout = follow_up {
            let current = sys::get_int(fd, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT)?;
            if Some(current) != auto_user_timeout(fd, [None; 3]) {
                return None;
            }
        }
        Some(follow_up)
    }

    fn apply(self, fd: c_int) {
        match self {
            FollowUp::Force(opt, Wanted::Value(value)) => {
                log_at!(
                    LogLevel::Debug,
                    "fd {fd}: program's {opt} replaced by {value} (KEEPALIVE=force)"
                );
                set(fd, opt, Some(value));
            }
            FollowUp::Force(_, Wanted::AutoUserTimeout) | FollowUp::RefreshAutoUserTimeout => {
                set(fd, Opt::UserTimeout, auto_user_timeout(fd, [None; 3]));
            }
        }
    }
}

/// Sets `opt` to `value`; `None` means the value could not be worked out, and the
/// option is left as it is.
fn set(fd: c_int, opt: Opt, value: Option<c_int>) {
    let Some(value) = value else {
        log_at!(
            LogLevel::Debug,
            "fd {fd}: {opt} left alone, the socket's timings could not be read"
        );
        return;
    };
    let (level, name) = policy::level_and_name(opt);
    match sys::set_int(fd, level, name, value) {
        Ok(()) => log_at!(LogLevel::Debug, "fd {fd}: {opt}={value}"),
        Err(errno) => log_at!(
            LogLevel::Debug,
            "fd {fd}: {opt}={value} failed, errno {errno}"
        ),
    }
}

/// TCP_USER_TIMEOUT for `auto` on this socket: idle, interval and count as `known`
/// (the configured ones, on a new socket), the others read from the socket. `None`
/// if one cannot be read: a guess could cut the connection before keepalive would.
fn auto_user_timeout(fd: c_int, known: [Option<u32>; 3]) -> Option<c_int> {
    let names = [libc::TCP_KEEPIDLE, libc::TCP_KEEPINTVL, libc::TCP_KEEPCNT];
    let mut timings = [0u32; 3];
    for ((timing, known), name) in timings.iter_mut().zip(known).zip(names) {
        *timing = match known {
            Some(value) => value,
            None => u32::try_from(sys::get_int(fd, libc::IPPROTO_TCP, name)?).ok()?,
        };
    }
    let [idle, interval, count] = timings;
    c_int::try_from(auto_user_timeout_ms(idle, interval, count)).ok()
}
