//! COMMAND as keepalive's child, in cgroup mode: keepalive starts it inside the run
//! cgroup, passes signals on to it, waits for it, and ends with its status. (Preload
//! mode needs none of this: there keepalive becomes COMMAND.)
//!
//! Signals. keepalive blocks, before it creates anything, every signal it passes on,
//! and takes them one at a time with sigwaitinfo(2), which also tells who sent each
//! one. No handler runs, so a signal can never interrupt setup or cleanup half way: one
//! that comes while the cgroup is made is passed on once COMMAND runs; one that comes
//! after COMMAND ended is dropped with keepalive. keepalive ends only after COMMAND.
//!
//! - Passed on: every signal but those below, from SIGHUP to SIGSYS and the real-time
//!   signals, as tini does, so that SIGUSR1, SIGUSR2, SIGALRM (a log reopen, a reload)
//!   reach COMMAND instead of killing keepalive. Sent with pidfd_send_signal(2) on the
//!   pidfd clone3 returned, so a recycled pid can never be hit.
//! - Not passed on: SIGKILL and SIGSTOP (they cannot be caught; SIGKILL leaves the
//!   cgroup for the next run to remove); SIGCHLD (keepalive's own: COMMAND ended);
//!   signals keepalive was started with ignored (nohup's SIGHUP): COMMAND inherits them
//!   ignored too. SIGPIPE is passed on although Rust's runtime ignores it in keepalive,
//!   since that says nothing of what the user chose; COMMAND starts with it at its
//!   default, as every program started from Rust does.
//! - Job control (SIGTSTP, SIGTTIN, SIGTTOU, SIGCONT) is left at its default action,
//!   neither blocked nor passed on, as `timeout --foreground` does: the terminal and
//!   the shell send these to the whole process group, so keepalive stops and continues
//!   together with COMMAND, and a shell sees the job stop on Ctrl-Z. If keepalive
//!   blocked SIGTSTP instead, COMMAND would stop alone and the shell, which waits for
//!   keepalive, would hang.
//! - Sent by the terminal (si_code SI_KERNEL): SIGINT, SIGQUIT, SIGWINCH on Ctrl-C,
//!   Ctrl-\ and a resize, and SIGHUP when the session leader exits, go to the whole
//!   foreground process group. When COMMAND is still in keepalive's group, it already
//!   got the signal, and keepalive does not send it a second time (terraform, for one,
//!   takes a second SIGINT as "abort now"). A SIGHUP from a hangup goes to the
//!   session leader alone: when keepalive leads its session, it passes SIGHUP on.
//! - Sent by keepalive itself (its own SIGPIPE, a raise): not passed on.
//!
//! A signal sent with kill(2) to the whole process group (`kill -- -PGID`, a shell's
//! SIGHUP to its jobs) reaches COMMAND directly and through keepalive: kill(2) does
//! not say whether it went to one process or to a group.
//!
//! The child. clone3(2) with CLONE_INTO_CGROUP starts COMMAND inside the run cgroup
//! (keepalive itself never enters it) and CLONE_PIDFD gives its pidfd from birth. The
//! child restores the signal mask keepalive started with and SIGCHLD's disposition
//! before exec, so that COMMAND starts with what the user gave keepalive.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::process::{Pid, WaitId, WaitIdOptions, WaitIdStatus};

use keepalive_cgroup::RunCgroup;

use crate::exit;

/// Signals that are never passed on: uncatchable, keepalive's own, and job control.
const NOT_FORWARDED: [libc::c_int; 7] = [
    libc::SIGKILL,
    libc::SIGSTOP,
    libc::SIGCHLD,
    libc::SIGTSTP,
    libc::SIGTTIN,
    libc::SIGTTOU,
    libc::SIGCONT,
];

/// What a terminal sends to its whole foreground process group.
const FROM_TERMINAL: [libc::c_int; 4] = [libc::SIGINT, libc::SIGQUIT, libc::SIGWINCH, libc::SIGHUP];

/// si_code values of signals sent by a process (kill, sigqueue, tgkill): the only ones
/// whose si_pid names a sender.
const SI_QUEUE: libc::c_int = -1;
const SI_TKILL: libc::c_int = -6;

/// The signals keepalive blocked and waits for, and what to give COMMAND back.
pub struct Signals {
    /// The signals passed on, plus SIGCHLD.
    waited: libc::sigset_t,
    /// The mask keepalive started with, for COMMAND.
    original_mask: libc::sigset_t,
    /// Whether keepalive started with SIGCHLD ignored (then it could not wait for
    /// COMMAND: it sets the default, and COMMAND gets the ignored disposition back).
    sigchld_ignored: bool,
}

impl Signals {
    /// Blocks every signal keepalive passes on, and SIGCHLD. Call it before anything
    /// is created: from then on no signal can end keepalive half way.
    pub fn block() -> Signals {
        // SAFETY: sigemptyset initialises the zeroed sets; sigaction with a null new
        // action only reads the current disposition into `current`; sigaddset gets
        // valid signal numbers (1..=31 and SIGRTMIN..=SIGRTMAX); setting SIGCHLD to
        // SIG_DFL changes no handler this program relies on; pthread_sigmask writes
        // the old mask into `original_mask`. keepalive has one thread.
        unsafe {
            let mut waited: libc::sigset_t = std::mem::zeroed();
            let mut original_mask: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut waited);
            libc::sigemptyset(&mut original_mask);
            for signal in (1..=31).chain(libc::SIGRTMIN()..=libc::SIGRTMAX()) {
                if NOT_FORWARDED.contains(&signal) {
                    continue;
                }
                let mut current: libc::sigaction = std::mem::zeroed();
                libc::sigaction(signal, std::ptr::null(), &mut current);
                if current.sa_sigaction == libc::SIG_IGN && signal != libc::SIGPIPE {
                    continue;
                }
                libc::sigaddset(&mut waited, signal);
            }
            let mut current: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut current);
            let sigchld_ignored = current.sa_sigaction == libc::SIG_IGN;
            if sigchld_ignored {
                libc::signal(libc::SIGCHLD, libc::SIG_DFL);
            }
            libc::sigaddset(&mut waited, libc::SIGCHLD);
            libc::pthread_sigmask(libc::SIG_BLOCK, &waited, &mut original_mask);
            Signals {
                waited,
                original_mask,
                sigchld_ignored,
            }
        }
    }

    /// The next signal, with what the kernel says of its sender.
    fn next(&self) -> (libc::c_int, libc::siginfo_t) {
        loop {
            // SAFETY: siginfo_t is plain integers and pointers, for which all zeroes
            // is a valid value.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: sigwaitinfo reads the initialised set and writes at most one
            // siginfo_t into `info`, which is one.
            let signal = unsafe { libc::sigwaitinfo(&self.waited, &mut info) };
            if signal > 0 {
                return (signal, info);
            }
            // EINTR: keepalive was stopped and continued; wait on.
        }
    }
}

/// COMMAND, running: its pid (for its process group) and its pidfd (for everything
/// else). Its pid cannot be reused before keepalive reaps it.
pub struct Child {
    pid: Pid,
    pidfd: OwnedFd,
}

/// Why COMMAND could not be started.
pub enum SpawnError {
    /// clone3 failed: the cgroup refused it, or no process could be made.
    Clone(io::Error),
    /// The exec of COMMAND failed (not found, not executable).
    Exec(io::Error),
}

/// clone3's flags (linux/sched.h), as 64-bit values: libc's CLONE_INTO_CGROUP is an
/// int that cannot hold it.
const CLONE_PIDFD: u64 = 0x1000;
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// The fields of `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER2, Linux 5.7).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Starts `command` inside `cgroup`, with the signal mask and dispositions keepalive
/// was given, and returns once it runs COMMAND's program (or could not).
pub fn spawn(
    command: &[OsString],
    cgroup: BorrowedFd<'_>,
    signals: &Signals,
) -> Result<Child, SpawnError> {
    let no_nul = |arg: &OsString| {
        CString::new(arg.as_bytes()).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "an argument holds a NUL byte")
        })
    };
    let argv = command
        .iter()
        .map(no_nul)
        .collect::<Result<Vec<CString>, _>>()
        .map_err(SpawnError::Exec)?;
    let Some(program) = argv.first() else {
        let empty = io::Error::new(io::ErrorKind::InvalidInput, "no COMMAND");
        return Err(SpawnError::Exec(empty));
    };
    let mut pointers: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    pointers.push(std::ptr::null());
    // The child writes its errno here if exec fails; a successful exec closes it.
    let (report_read, report_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| SpawnError::Clone(e.into()))?;

    let mut pidfd: libc::c_int = -1;
    let args = CloneArgs {
        flags: CLONE_PIDFD | CLONE_INTO_CGROUP,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: `args` is a live CloneArgs of the size passed, and `pidfd` outlives the
    // call. Without CLONE_VM the child gets a copy of this single-threaded process, as
    // with fork; it runs only `exec_child`, which calls async-signal-safe functions on
    // data prepared above and never returns.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if pid == 0 {
        // SAFETY: this is the child of clone3; see exec_child.
        unsafe {
            exec_child(
                program.as_ptr(),
                pointers.as_ptr(),
                signals,
                report_write.as_raw_fd(),
            )
        }
    }
    if pid < 0 {
        return Err(SpawnError::Clone(io::Error::last_os_error()));
    }
    drop(report_write);
    // SAFETY: clone3 succeeded with CLONE_PIDFD, so `pidfd` is a new descriptor that
    // nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let child = Child {
        pid: Pid::from_raw(pid as i32)
            .ok_or_else(|| SpawnError::Clone(io::Error::other("pid 0")))?,
        pidfd,
    };
    match read_report(&report_read) {
        None => Ok(child),
        Some(errno) => {
            let _ = child.wait(WaitIdOptions::EXITED);
            Err(SpawnError::Exec(io::Error::from_raw_os_error(errno)))
        }
    }
}

/// In the child of clone3: gives back the signal mask and the SIGCHLD disposition
/// keepalive started with, sets SIGPIPE to its default, and execs the program
/// (searching PATH, as std's Command does). If that fails, writes errno to `report`.
///
/// # Safety
/// Only in the child of a fork-like clone of a single-threaded process: it calls only
/// async-signal-safe functions (signal, sigprocmask, execvp, write, _exit), on
/// pointers that stay valid in the child's copy of memory, and never returns.
unsafe fn exec_child(
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    signals: &Signals,
    report: libc::c_int,
) -> ! {
    // SAFETY: see the function's contract; `program` and `argv` are NUL-terminated
    // strings and a null-terminated array prepared by the parent.
    unsafe {
        if signals.sigchld_ignored {
            libc::signal(libc::SIGCHLD, libc::SIG_IGN);
        }
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::sigprocmask(
            libc::SIG_SETMASK,
            &signals.original_mask,
            std::ptr::null_mut(),
        );
        libc::execvp(program, argv);
        let errno = *libc::__errno_location();
        let bytes = errno.to_ne_bytes();
        libc::write(report, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(exit::CANNOT_EXECUTE)
    }
}

/// The errno the child reported, or None when exec succeeded (end of file).
fn read_report(report: &OwnedFd) -> Option<i32> {
    let mut bytes = [0u8; 4];
    let mut filled = 0;
    while filled < bytes.len() {
        match rustix::io::read(report, &mut bytes[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => break,
        }
    }
    (filled == bytes.len()).then(|| i32::from_ne_bytes(bytes))
}

impl Child {
    fn wait(&self, options: WaitIdOptions) -> io::Result<Option<WaitIdStatus>> {
        loop {
            match rustix::process::waitid(WaitId::PidFd(self.pidfd.as_fd()), options) {
                Err(rustix::io::Errno::INTR) => continue,
                result => return result.map_err(io::Error::from),
            }
        }
    }

    /// COMMAND's exit status if it ended (and is now reaped), None while it runs.
    fn try_wait(&self) -> io::Result<Option<i32>> {
        let status = self.wait(WaitIdOptions::EXITED | WaitIdOptions::NOHANG)?;
        Ok(status.and_then(|s| {
            let (code, signal) = (s.exit_status(), s.terminating_signal());
            (code.is_some() || signal.is_some()).then(|| exit::of_command(code, signal))
        }))
    }

    fn send(&self, signal: libc::c_int) {
        // SAFETY: pidfd_send_signal reads nothing from memory (no siginfo is passed);
        // the pidfd is COMMAND's own, so no other process can get the signal.
        let sent = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if sent < 0 {
            log::debug!("passing on signal {signal}: {}", io::Error::last_os_error());
        } else {
            log::debug!("passed on signal {signal}");
        }
    }

    /// Whether COMMAND is in keepalive's own process group (the one a terminal
    /// signals when keepalive is in its foreground).
    fn shares_our_group(&self) -> bool {
        rustix::process::getpgid(Some(self.pid)).is_ok_and(|g| g == rustix::process::getpgrp())
    }
}

/// Passes signals on to `child` until it ends, and returns the status keepalive should
/// end with: COMMAND's own, or 128 + N when signal N killed it.
pub fn supervise(child: &Child, signals: &Signals) -> i32 {
    loop {
        let (signal, info) = signals.next();
        if signal == libc::SIGCHLD {
            match child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) => continue, // stopped or continued
                Err(error) => {
                    eprintln!("keepalive: waiting for COMMAND: {error}");
                    return exit::OWN_FAILURE;
                }
            }
        }
        if should_pass_on(signal, &info, child) {
            child.send(signal);
        }
    }
}

/// Whether `signal`, as the kernel describes it in `info`, should go on to COMMAND.
fn should_pass_on(signal: libc::c_int, info: &libc::siginfo_t, child: &Child) -> bool {
    let code = info.si_code;
    if matches!(code, libc::SI_USER | SI_QUEUE | SI_TKILL) {
        // SAFETY: the kernel filled the whole siginfo_t; for these codes si_pid is
        // the sender's pid, a plain integer.
        let sender = unsafe { info.si_pid() };
        return sender != std::process::id() as libc::pid_t;
    }
    if code == libc::SI_KERNEL && FROM_TERMINAL.contains(&signal) {
        let leads_session =
            rustix::process::getsid(None).is_ok_and(|session| session == rustix::process::getpid());
        let to_leader_alone = signal == libc::SIGHUP && leads_session;
        if !to_leader_alone && child.shares_our_group() {
            log::debug!("signal {signal} from the terminal already reached COMMAND");
            return false;
        }
    }
    true
}

/// COMMAND has ended but left processes in the run's cgroup (a daemon it started):
/// they keep keepalive, as they would under preload mode, and a watcher removes the
/// cgroup once the last of them has exited. The watcher is a child of keepalive that
/// outlives it, in a session of its own, with the signal mask keepalive was given and
/// nothing open but the cgroup; keepalive itself ends at once with COMMAND's status,
/// so that no shell or unit waits for the daemon. If the watcher is killed, the next
/// keepalive command removes the cgroup once it is empty.
pub fn hand_over(cgroup: RunCgroup, signals: &Signals) {
    log::info!(
        "COMMAND left processes in {}: they keep keepalive, and the cgroup goes when they end",
        cgroup.path().display()
    );
    // SAFETY: fork of a single-threaded process; the child runs plain Rust code of
    // this process (no locks are held by another thread) and ends with _exit.
    let pid = unsafe { libc::fork() };
    if pid != 0 {
        if pid < 0 {
            log::warn!(
                "cannot start a watcher for {}: {}; the next keepalive removes it once empty",
                cgroup.path().display(),
                io::Error::last_os_error()
            );
        }
        cgroup.leave();
        return;
    }
    // SAFETY: in the child: setsid and sigprocmask touch no memory of ours but the
    // initialised mask; open and dup2 work on descriptors this process owns.
    unsafe {
        libc::setsid();
        libc::sigprocmask(
            libc::SIG_SETMASK,
            &signals.original_mask,
            std::ptr::null_mut(),
        );
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if null >= 0 {
            for fd in 0..=2 {
                libc::dup2(null, fd);
            }
        }
        libc::chdir(c"/".as_ptr());
    }
    cgroup.remove_when_empty();
    // SAFETY: ends the watcher without running keepalive's exit path a second time.
    unsafe { libc::_exit(0) }
}
