//! Attaching the programs to a cgroup, and asking what is attached there, by the
//! bpf(2) system call itself.
//!
//! Programs are attached with BPF_F_ALLOW_MULTI. Such an attachment can only be
//! removed by naming the program (BPF_PROG_DETACH with its file descriptor, which
//! only a privileged process can get), so no other user can switch keepalive off,
//! and keepalive itself can never remove or replace another tool's program: the
//! kernel detaches exactly the program named. (An attachment without flags or with
//! BPF_F_ALLOW_OVERRIDE, which earlier versions made, can be removed by anyone who
//! can open the cgroup directory, without naming a program.) With several levels of
//! a cgroup tree attached, the kernel runs every level's programs, innermost first;
//! keepalive.bpf.c makes them agree that the innermost keepalive settings apply.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The hooks the two programs attach to (enum bpf_attach_type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    SockOps = 3,
    SetSockopt = 22,
}

impl Hook {
    pub const BOTH: [Hook; 2] = [Hook::SockOps, Hook::SetSockopt];

    pub fn name(self) -> &'static str {
        match self {
            Hook::SockOps => "sock_ops",
            Hook::SetSockopt => "setsockopt",
        }
    }
}

const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_QUERY: libc::c_long = 16;
/// Attach flags: several programs side by side, each removable only by naming it.
pub const BPF_F_ALLOW_MULTI: u32 = 2;

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

/// The part of `union bpf_attr` that BPF_PROG_QUERY reads and writes.
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
    prog_attach_flags: u64,
    link_ids: u64,
    link_attach_flags: u64,
    revision: u64,
}

/// bpf(cmd, attr): the kernel reads (and for queries writes) `attr` only.
///
/// # Safety
/// `T` must be one of the `bpf_attr` parts above, and every pointer it holds must be
/// valid for what the command does with it.
unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<()> {
    // SAFETY: attr is a live, initialised T whose own size is passed, so the kernel
    // touches only memory we own; the caller vouches for the pointers inside it.
    let result =
        unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
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

/// Attaches `program` to `cgroup` at `hook` with `flags` (MULTI: beside whatever else
/// is attached there). `Ok(false)` when it was attached already (the kernel refuses
/// the same program twice with EINVAL, which says nothing, so this asks first).
fn attach(
    cgroup: BorrowedFd<'_>,
    program: BorrowedFd<'_>,
    hook: Hook,
    flags: u32,
) -> io::Result<bool> {
    let id = program_id(program)?;
    if query(cgroup, hook)?.ids.contains(&id) {
        return Ok(false);
    }
    let mut attr = request(cgroup, program, hook, flags);
    // SAFETY: an AttachAttr holds no pointers.
    unsafe { bpf(BPF_PROG_ATTACH, &mut attr)? };
    Ok(true)
}

/// Detaches `program` from `cgroup` at `hook`. The kernel removes exactly that
/// program, or refuses (ENOENT) when it is not attached there.
pub fn detach(cgroup: BorrowedFd<'_>, program: BorrowedFd<'_>, hook: Hook) -> io::Result<()> {
    // The kernel matches a MULTI attachment by program; the flags are not read. An
    // attachment of an earlier version (override) is matched the same way.
    let mut attr = request(cgroup, program, hook, 0);
    // SAFETY: an AttachAttr holds no pointers.
    unsafe { bpf(BPF_PROG_DETACH, &mut attr) }
}

/// Attaches the sock_ops and setsockopt programs, in that order; if the second cannot
/// be attached, the first is detached again (unless it was attached before), so that
/// a failure leaves things as they were.
pub fn attach_both(cgroup: BorrowedFd<'_>, programs: [BorrowedFd<'_>; 2]) -> io::Result<()> {
    attach_both_with(cgroup, programs, BPF_F_ALLOW_MULTI)
}

/// [`attach_both`] with other flags: only to put back an earlier version's attachment.
pub fn attach_both_with(
    cgroup: BorrowedFd<'_>,
    [sock_ops, setsockopt]: [BorrowedFd<'_>; 2],
    flags: u32,
) -> io::Result<()> {
    let new = attach(cgroup, sock_ops, Hook::SockOps, flags)?;
    if let Err(error) = attach(cgroup, setsockopt, Hook::SetSockopt, flags) {
        if new {
            let _ = detach(cgroup, sock_ops, Hook::SockOps);
        }
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

/// The programs attached to one cgroup itself (not inherited) at one hook, as the
/// kernel reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attached {
    /// 0, BPF_F_ALLOW_OVERRIDE (1) or [`BPF_F_ALLOW_MULTI`], as the cgroup's programs
    /// at this hook were attached.
    pub flags: u32,
    /// Their ids, in the order the kernel runs them.
    pub ids: Vec<u32>,
}

/// What is attached to `cgroup` at `hook`.
pub fn query(cgroup: BorrowedFd<'_>, hook: Hook) -> io::Result<Attached> {
    // A cgroup holds at most 64 programs per hook (BPF_CGROUP_MAX_PROGS); the kernel
    // says how many there are when asked with no room.
    let mut ids = vec![0u32; 64];
    let mut attr = QueryAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type: hook as u32,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..QueryAttr::default()
    };
    // SAFETY: prog_ids points to `ids`, with room for the prog_cnt entries the kernel
    // may write; the other pointers are null, which the kernel skips.
    unsafe { bpf(BPF_PROG_QUERY, &mut attr)? };
    ids.truncate(attr.prog_cnt as usize);
    Ok(Attached {
        flags: attr.attach_flags,
        ids,
    })
}

/// The part of `struct bpf_prog_info` before the id, and the id.
#[repr(C)]
#[derive(Default)]
struct ProgInfoHead {
    prog_type: u32,
    id: u32,
}

/// The part of `union bpf_attr` that BPF_OBJ_GET_INFO_BY_FD reads.
#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// The kernel's id of a loaded program.
pub fn program_id(program: BorrowedFd<'_>) -> io::Result<u32> {
    let mut head = ProgInfoHead::default();
    let mut attr = InfoAttr {
        bpf_fd: program.as_raw_fd() as u32,
        info_len: std::mem::size_of::<ProgInfoHead>() as u32,
        info: &raw mut head as u64,
    };
    // SAFETY: info points to `head`, and info_len is its size: the kernel writes at
    // most that many bytes of the program's info there.
    unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)? };
    Ok(head.id)
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
