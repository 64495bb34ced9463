//! The functions the library puts in front of the C library's: socket(), which
//! configures each new TCP socket, and setsockopt(), which keeps the user's values
//! under KEEPALIVE=force.
//!
//! Both return exactly what the real call returns, with the errno it left: the
//! library's own calls may fail (an MPTCP socket refuses TCP_USER_TIMEOUT, a seccomp
//! filter may refuse setsockopt), and such failures are only logged at debug.

use core::ffi::{c_int, c_void};

use keepalive_config::{Config, LogLevel, Mode};

use crate::logger::log_at;
use crate::policy::{self, Opt, Wanted};
use crate::state;
use crate::sys::{self, SavedErrno};

/// socket(2), plus keepalive for TCP sockets.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    // The configuration first: when this call is the process's first read (from
    // another library's constructor), the logger must learn which file descriptor 2
    // is before the new socket can take that number.
    let config = state::config();
    let fd = sys::real_socket(domain, ty, protocol);
    if fd >= 0 && config.mode != Mode::Off && policy::is_tcp(domain, ty, protocol) {
        let errno = SavedErrno::save();
        configure(fd, &config);
        errno.restore();
    }
    fd
}

/// setsockopt(2); under KEEPALIVE=force, a TCP socket's option that the user
/// configured is set to the user's value instead of the program's.
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
    if let Some(opt) = Opt::from_level_and_name(level, name) {
        if let Some(forced) = forced_value(fd, opt) {
            log_at!(LogLevel::Debug, "fd {fd}: program's {opt} replaced by {forced} (KEEPALIVE=force)");
            return match sys::set_int(fd, level, name, forced) {
                Ok(()) => 0,
                Err(_) => -1, // errno is the real call's
            };
        }
    }
    // SAFETY: the program's own arguments, passed on unchanged.
    unsafe { sys::real_setsockopt(fd, level, name, value, len) }
}

/// Sets every option the configuration asks for on a new TCP socket.
fn configure(fd: c_int, config: &Config) {
    for opt in Opt::ALL {
        if let Some(wanted) = policy::wanted(config, opt) {
            let value = resolve(fd, config, wanted);
            let (level, name) = opt.level_and_name();
            match sys::set_int(fd, level, name, value) {
                Ok(()) => log_at!(LogLevel::Debug, "fd {fd}: {opt}={value}"),
                Err(errno) => log_at!(LogLevel::Debug, "fd {fd}: {opt}={value} failed, errno {errno}"),
            }
        }
    }
}

/// The value to force for a program's setsockopt, or `None` to let the call through.
/// Only a TCP socket is overridden: SO_KEEPALIVE also exists on other sockets.
fn forced_value(fd: c_int, opt: Opt) -> Option<c_int> {
    let config = state::config();
    let wanted = policy::forced(&config, opt)?;
    let protocol = sys::get_int(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL)?;
    policy::is_tcp_protocol(protocol).then(|| resolve(fd, &config, wanted))
}

/// A concrete value for a wanted one: `auto` takes the configured timings, and the
/// socket's own values (the kernel's defaults on a new socket) for the others.
fn resolve(fd: c_int, config: &Config, wanted: Wanted) -> c_int {
    match wanted {
        Wanted::Value(value) => value,
        Wanted::AutoUserTimeout => {
            let timing = |configured: Option<c_int>, name| {
                configured.or_else(|| sys::get_int(fd, libc::IPPROTO_TCP, name)).unwrap_or(0)
            };
            policy::auto_user_timeout(
                timing(config.idle.map(Into::into), libc::TCP_KEEPIDLE),
                timing(config.interval.map(Into::into), libc::TCP_KEEPINTVL),
                timing(config.count.map(Into::into), libc::TCP_KEEPCNT),
            )
        }
    }
}
