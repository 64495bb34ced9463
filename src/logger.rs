//! The library's messages: `libkeepalive: ...` lines on standard error.
//!
//! Each line is formatted on the stack and written with one write(2): no allocation,
//! no stdio buffer shared with the program. A line is written only while descriptor 2
//! is still the file it was when the configuration was read: a program that closed
//! its standard error and got a socket or a file in its place must never find our
//! text in it. The program's errno and signal mask are left as they were.
//!
//! This is deliberately not the `log` facade: a std dependency elsewhere in the
//! workspace (the command's env_logger) turns on log's `std` feature, and Cargo's
//! feature unification would then pull std into this no_std library.

use core::fmt::{self, Write};
use core::mem::MaybeUninit;
use core::sync::atomic::{
    AtomicBool, AtomicU8, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};

use keepalive_config::LogLevel;

use crate::sys::{self, SavedErrno};

/// Writes a line at the given level, formatting it only if that level is on.
macro_rules! log_at {
    ($level:expr, $($arg:tt)+) => {
        if $crate::logger::enabled($level) {
            $crate::logger::write_line(format_args!($($arg)+));
        }
    };
}
pub(crate) use log_at;

/// The most detailed level written; nothing before `install`.
static LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Off as u8);

/// Sets the level and remembers which file standard error is now.
pub fn install(level: LogLevel) {
    STDERR.remember();
    LEVEL.store(level as u8, Relaxed);
}

/// Whether lines of `level` are written: one atomic load.
#[inline]
pub fn enabled(level: LogLevel) -> bool {
    level != LogLevel::Off && level as u8 <= LEVEL.load(Relaxed)
}

#[cold]
pub fn write_line(message: fmt::Arguments<'_>) {
    let errno = SavedErrno::save();
    if STDERR.is_unchanged() {
        let mut line = Line::new();
        // Line never fails: it cuts what does not fit.
        let _ = write!(line, "libkeepalive: {message}");
        line.write_to_stderr();
    }
    errno.restore();
}

/// The identity of descriptor 2 when the configuration was read: device, inode
/// number, and birth time. The birth time tells a new file from the old one when the
/// file system has given the old inode number to it (ext4 does, as soon as an
/// unlinked standard error is closed).
struct FileIdentity {
    known: AtomicBool,
    parts: [AtomicU64; 4],
}

static STDERR: FileIdentity = FileIdentity {
    known: AtomicBool::new(false),
    parts: [
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    ],
};

impl FileIdentity {
    fn remember(&self) {
        if let Some(parts) = sys::stderr_identity() {
            for (slot, part) in self.parts.iter().zip(parts) {
                slot.store(part, Relaxed);
            }
            self.known.store(true, Release);
        }
    }

    /// False when descriptor 2 was closed at load time, is closed now, or now
    /// refers to another file.
    fn is_unchanged(&self) -> bool {
        self.known.load(Acquire)
            && sys::stderr_identity().is_some_and(|parts| {
                self.parts
                    .iter()
                    .zip(parts)
                    .all(|(slot, part)| slot.load(Relaxed) == part)
            })
    }
}

/// One message line, formatted on the stack and cut at `Line::CAPACITY` bytes.
///
/// Only the first `len` bytes are ever written and read, so the buffer is left
/// uninitialised, and bytes are copied one volatile store at a time: LLVM would turn a
/// zeroed buffer into a call to memset and a copy into memcpy, and each symbol the
/// library imports costs every process a lookup when it starts.
struct Line {
    bytes: [MaybeUninit<u8>; Line::CAPACITY],
    len: usize,
}

impl Line {
    const CAPACITY: usize = 512;

    fn new() -> Self {
        Line {
            bytes: [const { MaybeUninit::uninit() }; Line::CAPACITY],
            len: 0,
        }
    }

    fn push(&mut self, byte: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            // SAFETY: `slot` is a valid, exclusive reference to one byte of the buffer;
            // a volatile store to it is an ordinary store that LLVM may not merge.
            unsafe { core::ptr::write_volatile(slot.as_mut_ptr(), byte) };
            self.len += 1;
        }
    }

    /// The bytes written so far.
    fn written(&self) -> &[u8] {
        let len = self.len.min(Line::CAPACITY);
        // SAFETY: `push` is the only writer and wrote every byte below `len` (and `len`
        // never passes the capacity); MaybeUninit<u8> has the layout of u8.
        unsafe { core::slice::from_raw_parts(self.bytes.as_ptr().cast::<u8>(), len) }
    }

    /// Ends the line and writes it in one call, so that lines from several threads or
    /// processes do not interleave. SIGPIPE is held back meanwhile: a standard error
    /// nobody reads any more (a pipe whose reader exited, a closed connection) would
    /// otherwise kill a program that never writes there itself. The SIGPIPE this write
    /// raised is discarded; one that was already pending stays for the program.
    fn write_to_stderr(&mut self) {
        self.push(b'\n');
        let mut pending = self.written();

        let previous_mask = sys::block_sigpipe();
        let was_pending = sys::sigpipe_pending();
        while !pending.is_empty() {
            match sys::write_stderr(pending) {
                Ok(written) if written > 0 => pending = pending.get(written..).unwrap_or_default(),
                Err(libc::EINTR) => continue,
                _ => break,
            }
        }
        if !was_pending && sys::sigpipe_pending() {
            sys::discard_pending_sigpipe();
        }
        sys::restore_signal_mask(previous_mask);
    }
}

impl Write for Line {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        // One byte stays free for the newline.
        let free = (Line::CAPACITY - 1).saturating_sub(self.len);
        for &byte in text.as_bytes().iter().take(free) {
            self.push(byte);
        }
        Ok(())
    }
}
