//! The configuration of this process: read from the environment once, on first use,
//! and only read after that.
//!
//! First use is normally the library's constructor, before `main` (so a program that
//! clears its environment later keeps the configuration it started with); it can be
//! an earlier socket() from another library's constructor. Threads that race for the
//! first read each parse the environment for themselves (parsing is pure and
//! allocates nothing) and one of them publishes its result and reports problems, so
//! no thread ever waits for another. Once published, getting the configuration is one
//! atomic load and a copy.

use core::cell::UnsafeCell;
use core::ffi::CStr;
use core::sync::atomic::{AtomicU8, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};

use keepalive_config::{Config, LogLevel, Var};

use crate::logger::{self, log_at};
use crate::sys::{self, SavedErrno};

const UNREAD: u8 = 0;
const WRITING: u8 = 1;
const READY: u8 = 2;

struct Published {
    state: AtomicU8,
    config: UnsafeCell<Config>,
}

// SAFETY: `config` is written only by the one thread that moves `state` from UNREAD
// to WRITING, before it stores READY with Release ordering; it is read only after a
// load of READY with Acquire ordering. So a write never overlaps a read.
unsafe impl Sync for Published {}

static CURRENT: Published = Published {
    state: AtomicU8::new(UNREAD),
    config: UnsafeCell::new(Config::DEFAULT),
};

/// Reads the configuration now if it has not been read yet.
#[inline]
pub fn ensure_read() {
    if CURRENT.state.load(Acquire) != READY {
        read_environment();
    }
}

/// The configuration of this process.
pub fn config() -> Config {
    if CURRENT.state.load(Acquire) == READY {
        // SAFETY: READY was loaded with Acquire, so the single write is complete and
        // visible, and no other write will ever happen (see `Published`).
        return unsafe { *CURRENT.config.get() };
    }
    read_environment()
}

/// The first read. errno is kept: remembering standard error fails with EBADF when
/// descriptor 2 is closed, and this may run inside a program's socket() call.
///
/// A fork by another thread between the exchange and the store of READY leaves the
/// child in WRITING for good: every socket() there parses the environment again.
/// That is slower, not wrong, and the window is the constructor's, before `main`.
#[cold]
fn read_environment() -> Config {
    let errno = SavedErrno::save();
    let parsed = Config::from_lookup(getenv);
    if CURRENT
        .state
        .compare_exchange(UNREAD, WRITING, Acquire, Relaxed)
        .is_ok()
    {
        // SAFETY: winning the exchange makes this thread the only writer, and readers
        // wait for READY, stored below (see `Published`).
        unsafe { *CURRENT.config.get() = parsed.config };
        CURRENT.state.store(READY, Release);
        logger::install(parsed.config.log);
        for rejected in parsed.rejected() {
            log_at!(LogLevel::Warn, "{rejected}");
        }
        log_at!(LogLevel::Info, "pid {}: {}", sys::getpid(), parsed.config);
    }
    errno.restore();
    parsed.config
}

/// The value of one of the library's environment variables, as raw bytes.
fn getenv<'env>(var: Var) -> Option<&'env [u8]> {
    // SAFETY: the name is a NUL-terminated constant. getenv returns NULL or a
    // NUL-terminated string in the environment, which the program could change later;
    // the bytes are used only while the environment is read, before main in practice.
    unsafe {
        let value = libc::getenv(var.c_name().as_ptr());
        (!value.is_null()).then(|| CStr::from_ptr(value).to_bytes())
    }
}
