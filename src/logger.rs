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
    parts: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
};

impl FileIdentity {
    fn remember(&self) {
        if let Some(parts) = identity_of_stderr() {
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
            && identity_of_stderr().is_some_and(|parts| {
                self.parts.iter().zip(parts).all(|(slot, part)| slot.load(Relaxed) == part)
            })
    }
}

/// Device, inode, and birth time (seconds, nanoseconds; zero where the file system
/// keeps none, which is then so for the old file and the new alike) of descriptor 2.
fn identity_of_stderr() -> Option<[u64; 4]> {
    let mut stat = MaybeUninit::<libc::statx>::uninit();
    let wanted = libc::STATX_INO | libc::STATX_BTIME;
    // SAFETY: statx with AT_EMPTY_PATH and an empty path describes the descriptor
    // itself, writes a whole `statx` into the buffer when it returns 0, and the buffer
    // is read only in that case.
    unsafe {
        if libc::statx(libc::STDERR_FILENO, c"".as_ptr(), libc::AT_EMPTY_PATH, wanted, stat.as_mut_ptr()) != 0 {
            return None;
        }
        let stat = stat.assume_init();
        let device = u64::from(stat.stx_dev_major) << 32 | u64::from(stat.stx_dev_minor);
        let (born, born_nanos) = if stat.stx_mask & libc::STATX_BTIME != 0 {
            (stat.stx_btime.tv_sec as u64, u64::from(stat.stx_btime.tv_nsec))
        } else {
            (0, 0)
        };
        Some([device, stat.stx_ino, born, born_nanos])
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
        let _sigpipe = SigpipeBlocked::new();
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

/// SIGPIPE held back in this thread while it exists. A write to a standard error that
/// nobody reads any more (a pipe whose reader exited, a closed connection) raises
/// SIGPIPE, which would kill a program that never writes there itself. The signal
/// such a write raised is discarded; one already pending stays for the program.
struct SigpipeBlocked {
    previous_mask: libc::sigset_t,
    was_pending: bool,
}

impl SigpipeBlocked {
    fn new() -> Self {
        let mut previous_mask = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: the sets are initialised by sigemptyset or filled by
        // pthread_sigmask before they are read; the calls only touch this thread.
        unsafe {
            let sigpipe = sigpipe_set();
            libc::pthread_sigmask(libc::SIG_BLOCK, &sigpipe, previous_mask.as_mut_ptr());
            SigpipeBlocked { previous_mask: previous_mask.assume_init(), was_pending: sigpipe_pending() }
        }
    }
}

impl Drop for SigpipeBlocked {
    fn drop(&mut self) {
        // SAFETY: as in `new`; the zero timeout makes sigtimedwait take a pending
        // SIGPIPE without ever waiting.
        unsafe {
            if !self.was_pending && sigpipe_pending() {
                let sigpipe = sigpipe_set();
                let no_wait = libc::timespec { tv_sec: 0, tv_nsec: 0 };
                libc::sigtimedwait(&sigpipe, core::ptr::null_mut(), &no_wait);
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous_mask, core::ptr::null_mut());
        }
    }
}

fn sigpipe_set() -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the whole set, sigaddset then adds a valid signal.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGPIPE);
        set.assume_init()
    }
}

/// Whether a SIGPIPE is pending for this thread or the process.
fn sigpipe_pending() -> bool {
    let mut pending = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigpending fills the whole set when it returns 0, and it is read only then.
    unsafe { libc::sigpending(pending.as_mut_ptr()) == 0 && libc::sigismember(pending.as_ptr(), libc::SIGPIPE) == 1 }
}
