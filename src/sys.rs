//! Thin wrappers over the C library and the kernel: the real `socket` and
//! `setsockopt` behind the interposed ones, integer socket options, and errno.

use core::ffi::{CStr, c_int, c_void};
use core::mem::size_of;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

type SocketFn = unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;
type SetsockoptFn = unsafe extern "C" fn(c_int, c_int, c_int, *const c_void, libc::socklen_t) -> c_int;

/// The address of the next definition of a symbol after this library, looked up
/// once. `UNRESOLVED` until looked up; `MISSING` when dlsym found nothing, in which
/// case the raw system call stands in.
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
        NextSymbol { name, address: AtomicUsize::new(UNRESOLVED) }
    }

    /// The symbol's address, or `None` when there is no next definition. Racing
    /// threads may both look it up; they store the same answer.
    fn get(&self) -> Option<usize> {
        let mut address = self.address.load(Relaxed);
        if address == UNRESOLVED {
            // SAFETY: RTLD_NEXT with a NUL-terminated name is a valid dlsym call; it
            // only reads the loader's tables.
            let found = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr()) };
            address = if found.is_null() { MISSING } else { found as usize };
            self.address.store(address, Relaxed);
        }
        (address != MISSING).then_some(address)
    }
}

/// Looks the real functions up now, so that the first socket() of the program (which
/// may come from a signal handler) does not have to enter the dynamic loader.
pub fn resolve_real_functions() {
    REAL_SOCKET.get();
    REAL_SETSOCKOPT.get();
}

/// The real socket(): the C library's, or the system call if it cannot be found.
pub fn real_socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    match REAL_SOCKET.get() {
        // SAFETY: the address is the next definition of `socket`, whose C signature
        // is `int socket(int, int, int)`, the type transmuted to.
        Some(address) => unsafe { core::mem::transmute::<usize, SocketFn>(address)(domain, ty, protocol) },
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
        None => unsafe { libc::syscall(libc::SYS_setsockopt, fd, level, name, value, len) as c_int },
    }
}

/// Sets an integer socket option through the real setsockopt; the error is errno.
pub fn set_int(fd: c_int, level: c_int, name: c_int, value: c_int) -> Result<(), c_int> {
    let len = size_of::<c_int>() as libc::socklen_t;
    // SAFETY: `value` lives on this stack frame for the call and is `len` bytes long.
    let result = unsafe { real_setsockopt(fd, level, name, (&raw const value).cast(), len) };
    if result == 0 { Ok(()) } else { Err(errno()) }
}

/// Reads an integer socket option; `None` when the call fails.
pub fn get_int(fd: c_int, level: c_int, name: c_int) -> Option<c_int> {
    let mut value: c_int = 0;
    let mut len = size_of::<c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes for the duration of the call and
    // `len` holds the size of `value`. getsockopt is not interposed, so this is libc's.
    let result = unsafe { libc::getsockopt(fd, level, name, (&raw mut value).cast(), &mut len) };
    (result == 0).then_some(value)
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
