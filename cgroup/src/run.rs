//! `keepalive --cgroup -- COMMAND`: COMMAND runs in a new child cgroup of keepalive's
//! own, with the programs attached to it; keepalive stays its parent, forwards the
//! usual termination signals, and removes the cgroup and the programs when it ends.
//!
//! Nothing is pinned: the programs are attached to the child cgroup alone, and the
//! kernel frees them with it. If keepalive is killed with SIGKILL, the cgroup stays
//! (with the programs, for the processes still in it) until a later run finds it
//! empty and removes it.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

use keepalive_config::Config;

use crate::programs::Loaded;
use crate::settings::Settings;
use crate::{Error, cgroupfs, hooks, preflight};

/// Exit statuses, as env(1) and preload mode use them.
const EXIT_OWN_FAILURE: i32 = 125;
const EXIT_CANNOT_EXECUTE: i32 = 126;
const EXIT_NOT_FOUND: i32 = 127;

/// The child cgroups' names: the prefix, then keepalive's process id.
const RUN_PREFIX: &str = "keepalive-run.";

/// The signals passed on to COMMAND, as timeout(1) and init wrappers do.
const FORWARDED: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// COMMAND's process id once it runs; 0 before, when a signal has nobody to go to.
static CHILD: AtomicI32 = AtomicI32::new(0);
/// Signals that came before COMMAND's pid was known, a bit per signal number.
static PENDING: AtomicU32 = AtomicU32::new(0);

/// Runs `command` with `config` applied to its TCP connections by the BPF programs,
/// and returns the exit status keepalive should end with.
pub fn run(config: &Config, command: &[OsString]) -> i32 {
    let setup = match Setup::create(config) {
        Ok(setup) => setup,
        Err(error) => {
            eprintln!("keepalive: {error}");
            return EXIT_OWN_FAILURE;
        }
    };
    let status = setup.spawn_and_wait(command);
    setup.remove();
    status
}

/// The child cgroup with the programs attached, and where keepalive came from.
struct Setup {
    home: PathBuf,
    cgroup: PathBuf,
    programs: Loaded,
}

impl Setup {
    fn create(config: &Config) -> Result<Setup, Error> {
        preflight::check()?;
        let mount = cgroupfs::mount_point()?;
        let home = cgroupfs::cgroup_of(&mount, "self")?;
        remove_stale_runs(&home);
        let programs = Loaded::load(Settings::from_config(config))?;
        let cgroup = home.join(format!("{RUN_PREFIX}{}", std::process::id()));
        fs::create_dir(&cgroup).map_err(|e| {
            Error::new(format!(
                "cannot create the cgroup {}: {e}",
                cgroup.display()
            ))
        })?;
        let setup = Setup {
            home,
            cgroup,
            programs,
        };
        if let Err(error) = setup.enter() {
            setup.remove();
            return Err(error);
        }
        log::info!("cgroup: {}, {config}", setup.cgroup.display());
        Ok(setup)
    }

    /// Attaches the programs, then moves keepalive itself into the cgroup, so that
    /// COMMAND starts there: nothing runs between fork and exec.
    fn enter(&self) -> Result<(), Error> {
        let dir = hooks::open_cgroup(&self.cgroup)
            .map_err(|e| Error::new(format!("cannot open {}: {e}", self.cgroup.display())))?;
        self.programs.attach(dir.as_fd()).map_err(|e| {
            Error::new(format!(
                "cannot attach to the cgroup {}: {e}",
                self.cgroup.display()
            ))
        })?;
        cgroupfs::move_process(&self.cgroup, std::process::id()).map_err(|e| {
            Error::new(format!(
                "cannot move into the cgroup {}: {e}",
                self.cgroup.display()
            ))
        })
    }

    fn spawn_and_wait(&self, command: &[OsString]) -> i32 {
        let (program, args) = command.split_first().expect("clap requires COMMAND");
        forward_signals();
        let spawned = Command::new(program).args(args).spawn();
        if let Ok(child) = &spawned {
            CHILD.store(child.id() as i32, Ordering::SeqCst);
            pass_on_pending(child.id() as i32);
        }
        // keepalive leaves the cgroup at once: only COMMAND and what it starts are in it.
        let _ = cgroupfs::move_process(&self.home, std::process::id());
        let mut child = match spawned {
            Ok(child) => child,
            Err(error) => {
                eprintln!(
                    "keepalive: {}: {}",
                    program.to_string_lossy(),
                    describe(&error)
                );
                return match error.kind() {
                    io::ErrorKind::NotFound => EXIT_NOT_FOUND,
                    _ => EXIT_CANNOT_EXECUTE,
                };
            }
        };
        let status = child.wait();
        CHILD.store(0, Ordering::SeqCst);
        match status {
            Ok(status) => exit_code(status),
            Err(error) => {
                eprintln!(
                    "keepalive: waiting for {}: {error}",
                    program.to_string_lossy()
                );
                EXIT_OWN_FAILURE
            }
        }
    }

    /// Takes keepalive and whatever COMMAND left running out of the cgroup, detaches
    /// the programs and removes the cgroup.
    fn remove(&self) {
        let _ = cgroupfs::move_process(&self.home, std::process::id());
        let left = cgroupfs::processes(&self.cgroup).unwrap_or_default();
        if !left.is_empty() {
            log::info!(
                "moving {} process(es) COMMAND left running out of the cgroup",
                left.len()
            );
        }
        for pid in left {
            let _ = cgroupfs::move_process(&self.home, pid);
        }
        if let Ok(dir) = hooks::open_cgroup(&self.cgroup) {
            let _ = self.programs.detach(dir.as_fd());
        }
        if let Err(error) = fs::remove_dir(&self.cgroup) {
            eprintln!(
                "keepalive: cannot remove the cgroup {}: {error}",
                self.cgroup.display()
            );
        }
    }
}

/// Removes the cgroups of earlier runs whose keepalive was killed (SIGKILL) and whose
/// processes have all ended; the kernel frees their programs with them.
fn remove_stale_runs(home: &Path) {
    let Ok(entries) = fs::read_dir(home) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(RUN_PREFIX)) else {
            continue;
        };
        let Ok(pid) = pid.parse::<i32>() else {
            continue;
        };
        if is_alive(pid) {
            continue;
        }
        if fs::remove_dir(entry.path()).is_ok() {
            log::info!(
                "removed the cgroup of an earlier run: {}",
                entry.path().display()
            );
        }
    }
}

fn is_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let found = unsafe { libc::kill(pid, 0) } == 0;
    found || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

extern "C" fn pass_on(signal: libc::c_int) {
    let child = CHILD.load(Ordering::SeqCst);
    if child > 0 {
        // SAFETY: kill is async-signal-safe; child is COMMAND's pid, not yet reaped
        // (CHILD is cleared before wait's result is used).
        unsafe { libc::kill(child, signal) };
    } else {
        PENDING.fetch_or(1 << signal, Ordering::SeqCst);
    }
}

/// Passes on the signals that came while COMMAND was starting, before its pid was
/// known; those that come later, the handler passes on itself.
fn pass_on_pending(child: i32) {
    let pending = PENDING.swap(0, Ordering::SeqCst);
    for signal in FORWARDED.into_iter().filter(|&s| pending & (1 << s) != 0) {
        // SAFETY: kill has no memory preconditions; child is COMMAND, not yet reaped.
        unsafe { libc::kill(child, signal) };
    }
}

fn forward_signals() {
    for signal in FORWARDED {
        // SAFETY: a zeroed sigaction is a valid empty one; the handler only loads an
        // atomic and calls kill, both async-signal-safe. SA_RESTART lets wait resume.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = pass_on as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// COMMAND's own status, or 128 + N when signal N killed it, as shells report it.
fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|n| 128 + n))
        .unwrap_or(EXIT_OWN_FAILURE)
}

/// An error's message without Rust's " (os error N)" suffix.
fn describe(error: &io::Error) -> String {
    let text = error.to_string();
    text.find(" (os error")
        .map_or(text.clone(), |cut| text[..cut].to_string())
}
