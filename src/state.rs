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
use core::ffi::c_char;
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
    let found = environment();
    let parsed = Config::from_lookup(|var| found.get(var as usize).copied().flatten());
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
        if sys::dlsym_address().is_none() {
            log_at!(
                LogLevel::Info,
                "no dlsym in this process (glibc before 2.34, libdl not loaded): \
                 socket() and setsockopt() go straight to the kernel"
            );
        }
    }
    errno.restore();
    parsed.config
}

unsafe extern "C" {
    /// The process's environment, as the C library keeps it (what getenv reads).
    static environ: *const *const c_char;
}

/// The values of the library's variables, by `Var as usize`, from one walk over the
/// environment (six getenv() calls would scan it six times, and strlen every value).
/// The first definition of a name wins, as with getenv. Entries that do not start
/// with "KEEP", the prefix every variable shares, cost one comparison.
fn environment<'env>() -> [Option<&'env [u8]>; Var::ALL.len()] {
    let mut found = [None; Var::ALL.len()];
    // SAFETY: `environ` is NULL or a NULL-terminated array of NUL-terminated strings,
    // set before any constructor runs. The program could change it later; it is read
    // only here, before main in practice (see `read_environment`).
    let mut entry = unsafe { environ };
    if entry.is_null() {
        return found;
    }
    loop {
        // SAFETY: `entry` points into the NULL-terminated array (checked above and
        // below), so reading it is in bounds.
        let string = unsafe { *entry };
        if string.is_null() {
            return found;
        }
        // SAFETY: `string` is a NUL-terminated environment string.
        if let Some((var, value)) = unsafe { match_entry(string.cast()) } {
            if let Some(slot @ None) = found.get_mut(var as usize) {
                *slot = Some(value);
            }
        }
        // SAFETY: the array goes on at least to its NULL terminator, not reached yet.
        entry = unsafe { entry.add(1) };
    }
}

/// The variable `NAME=value` sets and its value, if NAME is one of the library's.
///
/// # Safety
/// `string` must point to a NUL-terminated string that outlives `'env`.
unsafe fn match_entry<'env>(string: *const u8) -> Option<(Var, &'env [u8])> {
    // Byte by byte up to the first difference, the NUL included: never past the end.
    let starts_with = |prefix: &[u8]| {
        prefix.iter().enumerate().all(|(i, &byte)| {
            // SAFETY: every earlier byte matched a non-NUL prefix byte, so the string
            // goes on at least to index `i`.
            unsafe { *string.add(i) == byte }
        })
    };
    if !starts_with(b"KEEP") {
        return None;
    }
    let var = Var::ALL.into_iter().find(|var| {
        let name = var.name().as_bytes();
        // SAFETY: as in starts_with: the bytes before match the name, none is NUL.
        starts_with(name) && unsafe { *string.add(name.len()) } == b'='
    })?;
    let start = var.name().len() + 1;
    let mut len = 0;
    // A volatile read, so that the optimiser does not turn the loop into a call to
    // strlen: one more symbol for the loader to look up in every process.
    // SAFETY: the string is NUL-terminated; the walk stops at the NUL.
    while unsafe { string.add(start + len).read_volatile() } != 0 {
        len += 1;
    }
    // SAFETY: `len` bytes from `start` are the value, before the NUL, alive for 'env.
    Some((var, unsafe {
        core::slice::from_raw_parts(string.add(start), len)
    }))
}
