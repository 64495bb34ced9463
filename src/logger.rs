//! The library's messages: `libkeepalive: ...` lines on standard error.
//!
//! Each line is formatted on the stack and written with one write(2): no allocation,
//! no stdio buffer shared with the program. A line is written only while descriptor 2
//! is still the file it was when the configuration was read: a program that closed
//! its standard error and got a socket or a file in its place must never find our
//! text in it. The program's errno is left as it was.

use core::fmt::{self, Write};
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};

use keepalive_config::LogLevel;
use log::{LevelFilter, Log, Metadata, Record};

use crate::sys::{self, SavedErrno};

/// Sets the level and remembers which file standard error is now.
pub fn install(level: LogLevel) {
    STDERR.remember();
    // Fails only if a logger is already set, which only this function does.
    let _ = log::set_logger(&StderrLogger);
    log::set_max_level(match level {
        LogLevel::Off => LevelFilter::Off,
        LogLevel::Error => LevelFilter::Error,
        LogLevel::Warn => LevelFilter::Warn,
        LogLevel::Info => LevelFilter::Info,
        LogLevel::Debug => LevelFilter::Debug,
    });
}

struct StderrLogger;

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let errno = SavedErrno::save();
        if STDERR.is_unchanged() {
            let mut line = Line::new();
            // Line never fails: it cuts what does not fit.
            let _ = write!(line, "libkeepalive: {}", record.args());
            line.write_to_stderr();
        }
        errno.restore();
    }

    fn flush(&self) {}
}

/// The identity (device and inode) of descriptor 2 when the configuration was read.
struct FileIdentity {
    known: AtomicBool,
    device: AtomicU64,
    inode: AtomicU64,
}

static STDERR: FileIdentity =
    FileIdentity { known: AtomicBool::new(false), device: AtomicU64::new(0), inode: AtomicU64::new(0) };

impl FileIdentity {
    fn remember(&self) {
        if let Some((device, inode)) = identity_of_stderr() {
            self.device.store(device, Relaxed);
            self.inode.store(inode, Relaxed);
            self.known.store(true, Release);
        }
    }

    /// False when descriptor 2 was closed at load time, is closed now, or now
    /// refers to another file.
    fn is_unchanged(&self) -> bool {
        self.known.load(Acquire)
            && identity_of_stderr()
                == Some((self.device.load(Relaxed), self.inode.load(Relaxed)))
    }
}

fn identity_of_stderr() -> Option<(u64, u64)> {
    let mut stat = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a whole `stat` into the buffer when it returns 0, and the
    // buffer is read only in that case.
    unsafe {
        if libc::fstat(libc::STDERR_FILENO, stat.as_mut_ptr()) != 0 {
            return None;
        }
        let stat = stat.assume_init();
        Some((stat.st_dev, stat.st_ino))
    }
}

/// One message line, formatted on the stack and cut at `Line::CAPACITY` bytes.
struct Line {
    bytes: [u8; Line::CAPACITY],
    len: usize,
}

impl Line {
    const CAPACITY: usize = 512;

    fn new() -> Self {
        Line { bytes: [0; Line::CAPACITY], len: 0 }
    }

    /// Ends the line and writes it in one call, so that lines from several threads or
    /// processes do not interleave.
    fn write_to_stderr(mut self) {
        let end = self.len.min(Line::CAPACITY - 1);
        self.bytes[end] = b'\n';
        let mut pending = &self.bytes[..=end];
        while !pending.is_empty() {
            // SAFETY: `pending` is valid for reads of its length.
            let written = unsafe { libc::write(libc::STDERR_FILENO, pending.as_ptr().cast(), pending.len()) };
            match usize::try_from(written) {
                Ok(n) if n > 0 => pending = pending.get(n..).unwrap_or_default(),
                _ if written < 0 && sys::errno() == libc::EINTR => continue,
                _ => return,
            }
        }
    }
}

impl Write for Line {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        // One byte stays free for the newline.
        let room = (Line::CAPACITY - 1).saturating_sub(self.len);
        let taken = text.len().min(room);
        self.bytes[self.len..self.len + taken].copy_from_slice(&text.as_bytes()[..taken]);
        self.len += taken;
        Ok(())
    }
}
