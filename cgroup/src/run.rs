//! The cgroup of one `keepalive --cgroup -- COMMAND` run: a new child cgroup of
//! keepalive's own, with the programs attached to it. [`RunCgroup`] owns it. Starting
//! COMMAND in it, signals and exit statuses are the command's business
//! (keepalive-cli), not this crate's.
//!
//! Who removes what, and when:
//! - Nothing is pinned: the programs are attached (BPF_F_ALLOW_MULTI) to the run's
//!   cgroup alone, and the kernel frees them with it.
//! - The run holds an flock on its cgroup's directory for as long as it owns it. The
//!   cgroup is named `keepalive-run.` and 16 random hex digits, so that runs in other
//!   PID namespaces, or with a reused PID, never collide.
//! - When COMMAND ends and the cgroup is empty, the run removes it, with any cgroups
//!   COMMAND made inside it. When processes remain (a daemon COMMAND started, which
//!   keeps keepalive as it would under preload mode), the run's owner hands it to a
//!   watcher ([`RunCgroup::remove_when_empty`]) that removes it once the last of them
//!   has exited.
//! - A cgroup whose owner is gone (keepalive or its watcher killed with SIGKILL) is
//!   removed by any later keepalive command that sees it, once it is empty.

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use crate::programs::Loaded;
use crate::rules::Policy;
use crate::{Error, cgroupfs, hooks, preflight};

/// The run cgroups' names: this prefix, then 16 random hex digits (0.4.0 used the
/// process id, which its cleanup still recognises).
pub(crate) const RUN_PREFIX: &str = "keepalive-run.";

/// A run's cgroup with the programs attached, owned (flocked) by this process.
pub struct RunCgroup {
    path: PathBuf,
    /// Open, and flocked: other keepalive commands leave an owned cgroup alone.
    dir: File,
    /// The programs attached to it, detached when it is removed.
    programs: Loaded,
    /// Set by [`RunCgroup::leave`]: someone else removes the cgroup.
    left: bool,
}

impl RunCgroup {
    /// Checks the kernel and privileges, removes what killed runs left, loads the
    /// programs with `policy`, makes the cgroup and attaches them to it. A failure
    /// leaves nothing behind.
    pub fn create(policy: &Policy) -> Result<RunCgroup, Error> {
        policy.check().map_err(Error::new)?;
        preflight::check()?;
        let mount = cgroupfs::mount_point()?;
        let home = cgroupfs::cgroup_of(&mount, "self")?;
        remove_abandoned_runs(&mount);
        let programs = Loaded::load(policy)?;
        let (path, dir) = make_owned_cgroup(&home)?;
        // From here on, dropping `run` undoes everything.
        let run = RunCgroup {
            path,
            dir,
            programs,
            left: false,
        };
        run.programs.attach(run.dir.as_fd()).map_err(|e| {
            Error::os(
                format!("cannot attach to the cgroup {}", run.path.display()),
                e,
            )
        })?;
        log::info!("cgroup: {}, {policy}", run.path.display());
        Ok(run)
    }

    /// The cgroup's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether processes remain in the cgroup or in cgroups below it.
    pub fn is_populated(&self) -> bool {
        is_populated(&self.path)
    }

    /// Waits until no process is left in the cgroup (cgroup.events says "populated
    /// 0"), then removes it: for a watcher, once COMMAND has ended and left processes
    /// behind. Returns when the cgroup is gone, or when it cannot be watched.
    pub fn remove_when_empty(self) {
        let mut events = match File::open(self.path.join("cgroup.events")) {
            Ok(events) => events,
            Err(error) => {
                log::warn!("cannot watch {}: {error}", self.path.display());
                return;
            }
        };
        // Each read through this descriptor tells the kernel what was seen; poll then
        // waits until cgroup.events changes after that (POLLPRI), instead of at once.
        while read_populated(&mut events) {
            let mut poll = libc::pollfd {
                fd: events.as_raw_fd(),
                events: libc::POLLPRI,
                revents: 0,
            };
            // SAFETY: one valid pollfd, for the duration of the call.
            let ready = unsafe { libc::poll(&mut poll, 1, -1) };
            if ready < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                log::warn!("cannot watch {}", self.path.display());
                return;
            }
        }
        // Dropping removes it.
    }

    /// Lets go of the cgroup without removing it, for a watcher that holds it too
    /// (a child that shares its open directory, and so its lock).
    pub fn leave(mut self) {
        self.left = true;
    }
}

/// The cgroup's directory, open: what clone3's CLONE_INTO_CGROUP takes, so that
/// COMMAND starts inside it and keepalive never enters it.
impl AsFd for RunCgroup {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }
}

impl Drop for RunCgroup {
    /// Removes the cgroup, and the cgroups COMMAND made inside it, if no process is
    /// left in them; the kernel then frees the programs. With processes left, the
    /// cgroup stays, with keepalive, for them: whoever owns it next removes it.
    fn drop(&mut self) {
        if self.left {
            return;
        }
        if self.is_populated() {
            log::info!(
                "{} stays, with keepalive, for the processes left in it",
                self.path.display()
            );
            return;
        }
        // Detached first, so that the kernel frees the programs now rather than a
        // moment after the cgroup goes.
        let _ = self.programs.detach(self.dir.as_fd());
        if let Err(error) = remove_tree(&self.path) {
            eprintln!(
                "keepalive: cannot remove the cgroup {}: {error}",
                self.path.display()
            );
        }
    }
}

/// Makes a run cgroup below `home` and takes its lock. It is made 0711: no other user
/// can open it, and so hold its lock, but COMMAND's processes under other users can
/// still read their own cgroup's files. Another
/// keepalive's cleanup may remove it in the moment between mkdir and flock (it looks
/// abandoned then): made again under a new name in that case.
fn make_owned_cgroup(home: &Path) -> Result<(PathBuf, File), Error> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let mut attempts = 0;
    loop {
        attempts += 1;
        let path = home.join(format!("{RUN_PREFIX}{:016x}", random()?));
        fs::DirBuilder::new()
            .mode(0o711)
            .create(&path)
            .map_err(|e| Error::os(format!("cannot create the cgroup {}", path.display()), e))?;
        let owned = hooks::open_cgroup(&path).and_then(|dir| {
            lock(&dir, libc::LOCK_NB)?;
            let ours = dir.metadata()?.ino();
            let still_there = fs::metadata(&path).is_ok_and(|m| m.ino() == ours);
            Ok((dir, still_there))
        });
        match owned {
            Ok((dir, true)) => return Ok((path, dir)),
            Ok((_, false)) | Err(_) if attempts < 3 => {
                let _ = fs::remove_dir(&path);
            }
            Ok((_, false)) => {
                return Err(Error::new(format!(
                    "the cgroup {} was removed as it was made",
                    path.display()
                )));
            }
            Err(e) => {
                let _ = fs::remove_dir(&path);
                return Err(Error::os(format!("cannot open {}", path.display()), e));
            }
        }
    }
}

/// flock(2) on an open directory; `extra` adds LOCK_NB.
fn lock(dir: &File, extra: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: flock on a descriptor we own; it touches no memory.
        if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | extra) } == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// 64 random bits, from getrandom(2).
pub(crate) fn random() -> Result<u64, Error> {
    let mut bytes = [0u8; 8];
    // SAFETY: the buffer is valid for writes of its length.
    let got = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if got != bytes.len() as isize {
        return Err(Error::os(
            "cannot name the run's cgroup (getrandom)",
            io::Error::last_os_error(),
        ));
    }
    Ok(u64::from_ne_bytes(bytes))
}

/// "populated 1" in the cgroup's cgroup.events: processes in it or below it.
fn is_populated(path: &Path) -> bool {
    File::open(path.join("cgroup.events")).is_ok_and(|mut events| read_populated(&mut events))
}

/// "populated 1" in an open cgroup.events, read from its start.
fn read_populated(events: &mut File) -> bool {
    use std::io::{Read, Seek};
    let mut text = String::new();
    events.rewind().is_ok()
        && events.read_to_string(&mut text).is_ok()
        && text.lines().any(|line| line == "populated 1")
}

/// Removes `path` and every cgroup below it, innermost first.
fn remove_tree(path: &Path) -> io::Result<()> {
    if let Ok(entries) = fs::read_dir(path) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&entry.path())?;
            }
        }
    }
    match fs::remove_dir(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The run cgroups, anywhere this process can see, whose owner still holds them:
/// runs under way (or handed to a watcher until their last process exits).
pub(crate) fn live_runs(mount: &Path) -> Vec<PathBuf> {
    cgroupfs::named_like(mount, RUN_PREFIX)
        .into_iter()
        .filter(|path| {
            hooks::open_cgroup(path).is_ok_and(|dir| {
                // Taken, the lock goes with `dir` at once; refused, the run is alive.
                lock(&dir, libc::LOCK_NB).is_err_and(|e| e.kind() == io::ErrorKind::WouldBlock)
            })
        })
        .collect()
}

/// Removes the run cgroups, anywhere this process can see, whose owner has gone
/// (keepalive or its watcher killed with SIGKILL) and in which no process is left.
/// One whose owner still holds it is left alone: it may be between making it and
/// starting COMMAND, with no process in it yet.
fn remove_abandoned_runs(mount: &Path) {
    for path in cgroupfs::named_like(mount, RUN_PREFIX) {
        let Ok(dir) = hooks::open_cgroup(&path) else {
            continue;
        };
        if lock(&dir, libc::LOCK_NB).is_err() || is_populated(&path) {
            continue;
        }
        if remove_tree(&path).is_ok() {
            log::info!("removed the cgroup of an earlier run: {}", path.display());
        }
    }
}
