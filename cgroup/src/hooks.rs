//! Attaching the programs to a cgroup, by the bpf(2) system call itself.
//!
//! aya attaches through bpf_link on current kernels, and cgroup links always run a
//! parent cgroup's programs after a child's, so an outer cgroup's settings would
//! overwrite an inner one's. A program attached with BPF_F_ALLOW_OVERRIDE instead
//! replaces the programs of the cgroups above it for the cgroups below it: the
//! innermost settings apply, which is what nesting should mean. Such an attachment
//! belongs to the cgroup, not to a file descriptor: it lasts until it is detached or
//! the cgroup is removed.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The hooks the two programs attach to (enum bpf_attach_type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hook {
    SockOps = 3,
    SetSockopt = 22,
}

const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_F_ALLOW_OVERRIDE: u32 = 1;

/// The part of `union bpf_attr` that BPF_PROG_ATTACH and BPF_PROG_DETACH read; the
/// kernel requires the rest of the union, up to the size passed, to be zero.
#[repr(C)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

fn bpf(cmd: libc::c_long, attr: &AttachAttr) -> io::Result<()> {
    // SAFETY: attr is a live, initialised AttachAttr and the size passed is its own,
    // so the kernel reads only memory we own; it writes nothing for these commands.
    let result = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const AttachAttr,
            std::mem::size_of::<AttachAttr>(),
        )
    };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Attaches `program` to `cgroup` at `hook`, replacing a keepalive program already
/// there (attaching with the same flags replaces, atomically).
fn attach(cgroup: BorrowedFd<'_>, program: BorrowedFd<'_>, hook: Hook) -> io::Result<()> {
    bpf(
        BPF_PROG_ATTACH,
        &request(cgroup, program, hook, BPF_F_ALLOW_OVERRIDE),
    )
}

/// Detaches `program` from `cgroup`; the kernel refuses (ENOENT) if another program
/// is attached there, so only ours is ever removed.
fn detach(cgroup: BorrowedFd<'_>, program: BorrowedFd<'_>, hook: Hook) -> io::Result<()> {
    bpf(BPF_PROG_DETACH, &request(cgroup, program, hook, 0))
}

fn request(cgroup: BorrowedFd<'_>, program: BorrowedFd<'_>, hook: Hook, flags: u32) -> AttachAttr {
    AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: program.as_raw_fd() as u32,
        attach_type: hook as u32,
        attach_flags: flags,
        replace_bpf_fd: 0,
    }
}

/// Attaches the sock_ops and setsockopt programs, in that order; if the second cannot
/// be attached, the first is detached again, so that a failure leaves nothing behind.
pub fn attach_both(
    cgroup: BorrowedFd<'_>,
    [sock_ops, setsockopt]: [BorrowedFd<'_>; 2],
) -> io::Result<()> {
    attach(cgroup, sock_ops, Hook::SockOps)?;
    if let Err(error) = attach(cgroup, setsockopt, Hook::SetSockopt) {
        let _ = detach(cgroup, sock_ops, Hook::SockOps);
        return Err(error);
    }
    Ok(())
}

/// Detaches both programs, trying the second even if the first fails.
pub fn detach_both(
    cgroup: BorrowedFd<'_>,
    [sock_ops, setsockopt]: [BorrowedFd<'_>; 2],
) -> io::Result<()> {
    let first = detach(cgroup, sock_ops, Hook::SockOps);
    let second = detach(cgroup, setsockopt, Hook::SetSockopt);
    first.and(second)
}

/// A cgroup directory opened for attaching.
pub fn open_cgroup(path: &std::path::Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)?;
    Ok(dir)
}
