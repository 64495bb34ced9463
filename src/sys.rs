//! Thin wrappers over the C library and the kernel: the real `socket` and
//! `setsockopt` behind the interposed ones, integer socket options, standard error,
//! the SIGPIPE mask, and errno.
//!
//! None of these wrappers changes errno: each failure is returned as a value, and
//! errno is put back as the caller had it. That is what lets socket() and
//! setsockopt() promise the program errno exactly as the real call left it, whatever
//! the library reads or writes around that call.
//!
//! Everything but the two real functions goes through `syscall()`: every C library
//! function the library imports is one more symbol the dynamic loader must look up in
//! every process at start, used or not (about 640 instructions each, measured with
//! callgrind), and most processes never call socket() at all.
//!
//! The real functions are found with dlsym(RTLD_NEXT), which is not in every process:
//! before glibc 2.34 it lives in libdl.so.2, which /bin/sh, coreutils and most daemons
//! do not load. A plain reference to it would stop such a program at start ("symbol
//! lookup error: undefined symbol: dlsym"), so the reference is weak (see
//! [`dlsym_address`]), and where it is missing the system calls stand in for the two
//! functions. Every other symbol the library imports (`syscall`, `environ`,
//! `__errno_location`, `memcpy`) is in every C library it can meet: glibc since long
//! before 2.17, and musl.

use core::ffi::{CStr, c_int, c_long, c_void};
use core::mem::{MaybeUninit, size_of};
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

type DlsymFn = unsafe extern "C" fn(*mut c_void, *const core::ffi::c_char) -> *mut c_void;
type SocketFn = unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;
type SetsockoptFn =
    unsafe extern "C" fn(c_int, c_int, c_int, *const c_void, libc::socklen_t) -> c_int;

/// The address of the next definition of a symbol after this library, looked up
/// once. `UNRESOLVED` until looked up; `MISSING` when dlsym found nothing or the
/// process has no dlsym, in which case the raw system call stands in.
struct NextSymbol {
    name: &'static CStr,
    address: AtomicUsize,
}

const UNRESOLVED: usize = 0;
const MISSING: usize = 1;

static REAL_SOCKET: NextSymbol = NextSymbol::new(c"socket");
static REAL_SETSOCKOPT: NextSymbol = NextSymbol::new(c"setsockopt");

impl NextSymbol {
    const fn new(name: &'static CStr) -> Self {
        NextSymbol {
            name,
            address: AtomicUsize::new(UNRESOLVED),
        }
    }

    /// The symbol's address, or `None` when there is no next definition. Racing
    /// threads may both look it up; they store the same answer.
    fn get(&self) -> Option<usize> {
        let mut address = self.address.load(Relaxed);
        if address == UNRESOLVED {
            let found = match dlsym_address() {
                // SAFETY: the address is the C library's dlsym, whose signature is the
                // type transmuted to; RTLD_NEXT with a NUL-terminated name is a valid
                // call, which only reads the loader's tables.
                Some(dlsym) => unsafe {
                    core::mem::transmute::<usize, DlsymFn>(dlsym)(
                        libc::RTLD_NEXT,
                        self.name.as_ptr(),
                    )
                },
                None => core::ptr::null_mut(),
            };
            address = if found.is_null() {
                MISSING
            } else {
                found as usize
            };
            self.address.store(address, Relaxed);
        }
        (address != MISSING).then_some(address)
    }
}

// A word holding the address of dlsym, or 0 where no loaded object defines it. The
// reference is weak, which Rust cannot declare, so it is written in assembly: the
// loader fills the word at start (a relocation like any other) and leaves 0 instead
// of refusing to start the program. Reading the word, rather than comparing a Rust
// function's address with null, keeps the optimiser from assuming it is never 0.
// The word is hidden: nothing new is exported.
core::arch::global_asm!(
    ".weak dlsym",
    ".pushsection .data.rel.ro.keepalive_dlsym, \"aw\"",
    ".balign 8",
    ".globl keepalive_dlsym",
    ".hidden keepalive_dlsym",
    "keepalive_dlsym:",
    ".8byte dlsym",
    ".popsection",
);

unsafe extern "C" {
    /// See the assembly above.
    static keepalive_dlsym: usize;
}

/// The address of dlsym, or `None` in a process without it (glibc before 2.34 in a
/// program that does not link libdl).
pub fn dlsym_address() -> Option<usize> {
    // SAFETY: the word is initialised by the loader before any code of the library
    // runs, and never written after that. The read is volatile so that it is made.
    let address = unsafe { (&raw const keepalive_dlsym).read_volatile() };
    (address != 0).then_some(address)
}

/// The real socket(): the C library's, or the system call if it cannot be found.
/// The first call also looks up setsockopt, which the library calls on the new
/// socket: one visit to the dynamic loader, on the first socket() of the process
/// rather than at every start.
pub fn real_socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    if REAL_SOCKET.address.load(Relaxed) == UNRESOLVED {
        REAL_SETSOCKOPT.get();
    }
    match REAL_SOCKET.get() {
        // SAFETY: the address is the next definition of `socket`, whose C signature
        // is `int socket(int, int, int)`, the type transmuted to.
        Some(address) => unsafe {
            core::mem::transmute::<usize, SocketFn>(address)(domain, ty, protocol)
        },
        // SAFETY: socket(2) takes three integers and touches no memory of ours.
        None => unsafe { libc::syscall(libc::SYS_socket, domain, ty, protocol) as c_int },
    }
}

/// The real setsockopt(): the C library's, or the system call if it cannot be found.
///
/// # Safety
/// `value` must be valid for reads of `len` bytes, as setsockopt(2) requires.
pub unsafe fn real_setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    value: *const c_void,
    len: libc::socklen_t,
) -> c_int {
    match REAL_SETSOCKOPT.get() {
        // SAFETY: the address is the next definition of `setsockopt`, whose C
        // signature is the one transmuted to; the caller vouches for `value`.
        Some(address) => unsafe {
            core::mem::transmute::<usize, SetsockoptFn>(address)(fd, level, name, value, len)
        },
        // SAFETY: the caller vouches for `value` and `len`.
        None => unsafe {
            libc::syscall(libc::SYS_setsockopt, fd, level, name, value, len) as c_int
        },
    }
}

/// Sets an integer socket option through the real setsockopt; the error is the errno
/// the call set, and errno itself is left as it was.
pub fn set_int(fd: c_int, level: c_int, name: c_int, value: c_int) -> Result<(), c_int> {
    let saved = SavedErrno::save();
    let len = size_of::<c_int>() as libc::socklen_t;
    // SAFETY: `value` lives on this stack frame for the call and is `len` bytes long.
    let result = unsafe { real_setsockopt(fd, level, name, (&raw const value).cast(), len) };
    let outcome = if result == 0 { Ok(()) } else { Err(errno()) };
    saved.restore();
    outcome
}

/// Reads an integer socket option; `None` when the call fails. errno is left as it was.
pub fn get_int(fd: c_int, level: c_int, name: c_int) -> Option<c_int> {
    let saved = SavedErrno::save();
    let mut value: c_int = 0;
    let mut len = size_of::<c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes for the duration of the call and
    // `len` holds the size of `value`.
    let result = unsafe {
        libc::syscall(
            libc::SYS_getsockopt,
            fd,
            level,
            name,
            &raw mut value,
            &raw mut len,
        )
    };
    saved.restore();
    (result == 0).then_some(value)
}

/// write(2) to descriptor 2; the number of bytes written, or errno.
pub fn write_stderr(bytes: &[u8]) -> Result<usize, c_int> {
    // SAFETY: `bytes` is valid for reads of its length.
    let result = unsafe {
        libc::syscall(
            libc::SYS_write,
            libc::STDERR_FILENO,
            bytes.as_ptr(),
            bytes.len(),
        )
    };
    usize::try_from(result).map_err(|_| errno())
}

/// Device, inode number and birth time (seconds, nanoseconds; zero where the file
/// system keeps none) of the file open on descriptor 2, or `None` when it is closed.
pub fn stderr_identity() -> Option<[u64; 4]> {
    let mut stat = MaybeUninit::<libc::statx>::zeroed();
    let wanted = libc::STATX_INO | libc::STATX_BTIME;
    // SAFETY: statx with AT_EMPTY_PATH and an empty path describes the descriptor
    // itself and writes at most one `statx` into the buffer.
    let result = unsafe {
        libc::syscall(
            libc::SYS_statx,
            libc::STDERR_FILENO,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            wanted,
            stat.as_mut_ptr(),
        )
    };
    if result != 0 {
        return None;
    }
    // SAFETY: zeroed is a valid `statx` (plain integers), filled in by the kernel.
    let stat = unsafe { stat.assume_init() };
    let device = (u64::from(stat.stx_dev_major) << 32) | u64::from(stat.stx_dev_minor);
    let (born, born_nanos) = if stat.stx_mask & libc::STATX_BTIME != 0 {
        (
            stat.stx_btime.tv_sec as u64,
            u64::from(stat.stx_btime.tv_nsec),
        )
    } else {
        (0, 0)
    };
    Some([device, stat.stx_ino, born, born_nanos])
}

/// The process ID.
pub fn getpid() -> c_long {
    // SAFETY: getpid takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_getpid) }
}

/// A signal set as the kernel takes it: one bit per signal, 64 signals.
type KernelSigset = u64;
const SIGSET_SIZE: usize = size_of::<KernelSigset>();
const SIGPIPE_BIT: KernelSigset = 1 << (libc::SIGPIPE - 1);

/// Blocks SIGPIPE in the calling thread; returns the previous mask.
pub fn block_sigpipe() -> KernelSigset {
    let mut previous: KernelSigset = 0;
    // SAFETY: both sets are valid for the kernel's sigset size for the call.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_BLOCK,
            &SIGPIPE_BIT,
            &raw mut previous,
            SIGSET_SIZE,
        );
    }
    previous
}

/// Puts back a mask returned by `block_sigpipe`.
pub fn restore_signal_mask(mask: KernelSigset) {
    // SAFETY: `mask` is valid for the kernel's sigset size; the old set is not asked for.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &mask,
            core::ptr::null_mut::<KernelSigset>(),
            SIGSET_SIZE,
        );
    }
}

/// Whether a SIGPIPE is pending for the calling thread or the process.
pub fn sigpipe_pending() -> bool {
    let mut pending: KernelSigset = 0;
    // SAFETY: `pending` is valid for writes of the kernel's sigset size.
    let result = unsafe { libc::syscall(libc::SYS_rt_sigpending, &raw mut pending, SIGSET_SIZE) };
    result == 0 && pending & SIGPIPE_BIT != 0
}

/// Takes a pending SIGPIPE, without waiting if there is none.
pub fn discard_pending_sigpipe() {
    let no_wait = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: the set and the timeout are valid for reads; no siginfo is asked for.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigtimedwait,
            &SIGPIPE_BIT,
            core::ptr::null_mut::<libc::siginfo_t>(),
            &no_wait,
            SIGSET_SIZE,
        );
    }
}

/// The calling thread's errno.
pub fn errno() -> c_int {
    // SAFETY: __errno_location returns the calling thread's errno, always valid.
    unsafe { *libc::__errno_location() }
}

/// The calling thread's errno, saved so that it can be put back: the library's own
/// calls must never change what the program sees in errno.
#[must_use = "errno is put back only by restore()"]
pub struct SavedErrno(c_int);

impl SavedErrno {
    pub fn save() -> Self {
        SavedErrno(errno())
    }

    pub fn restore(self) {
        // SAFETY: __errno_location returns the calling thread's errno, always valid.
        unsafe { *libc::__errno_location() = self.0 }
    }
}
