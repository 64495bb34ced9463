//! The cgroup of one `keepalive --cgroup -- COMMAND` run: a new child cgroup of
//! keepalive's own, with the programs attached to it. [`RunCgroup`] owns it: dropping
//! it detaches the programs and removes the cgroup. Starting COMMAND in it, signals
//! and exit statuses are the command's business (keepalive-cli), not this crate's.
//!
//! Nothing is pinned: the programs are attached to the child cgroup alone, and the
//! kernel frees them with it. If keepalive is killed with SIGKILL, the cgroup stays
//! (with the programs, for the processes still in it) until a later run finds it
//! empty and removes it.

use std::fs::{self, File};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use keepalive_config::Config;

use crate::programs::Loaded;
use crate::settings::Settings;
use crate::{Error, cgroupfs, hooks, preflight};

/// The child cgroups' names: the prefix, then keepalive's process id.
const RUN_PREFIX: &str = "keepalive-run.";

/// A child cgroup with the programs attached, removed (programs detached, processes
/// left in it moved out) when dropped.
pub struct RunCgroup {
    home: PathBuf,
    path: PathBuf,
    dir: File,
    programs: Loaded,
}

impl RunCgroup {
    /// Checks the kernel and privileges, removes what killed runs left, loads the
    /// programs with `config`, makes the cgroup and attaches them to it. A failure
    /// leaves nothing behind.
    pub fn create(config: &Config) -> Result<RunCgroup, Error> {
        preflight::check()?;
        let mount = cgroupfs::mount_point()?;
        let home = cgroupfs::cgroup_of(&mount, "self")?;
        remove_stale_runs(&home);
        let programs = Loaded::load(Settings::from_config(config))?;
        let path = home.join(format!("{RUN_PREFIX}{}", std::process::id()));
        fs::create_dir(&path)
            .map_err(|e| Error::new(format!("cannot create the cgroup {}: {e}", path.display())))?;
        let dir = match hooks::open_cgroup(&path) {
            Ok(dir) => dir,
            Err(e) => {
                let _ = fs::remove_dir(&path);
                return Err(Error::new(format!("cannot open {}: {e}", path.display())));
            }
        };
        // From here on, dropping `run` undoes everything.
        let run = RunCgroup {
            home,
            path,
            dir,
            programs,
        };
        run.programs.attach(run.dir.as_fd()).map_err(|e| {
            Error::new(format!(
                "cannot attach to the cgroup {}: {e}",
                run.path.display()
            ))
        })?;
        log::info!("cgroup: {}, {config}", run.path.display());
        Ok(run)
    }

    /// The cgroup's directory.
    pub fn path(&self) -> &Path {
        &self.path
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
    /// Moves whatever COMMAND left running out of the cgroup, detaches the programs
    /// and removes the cgroup.
    fn drop(&mut self) {
        let left = cgroupfs::processes(&self.path).unwrap_or_default();
        if !left.is_empty() {
            log::info!(
                "moving {} process(es) COMMAND left running out of the cgroup",
                left.len()
            );
        }
        for pid in left {
            let _ = cgroupfs::move_process(&self.home, pid);
        }
        let _ = self.programs.detach(self.dir.as_fd());
        if let Err(error) = fs::remove_dir(&self.path) {
            eprintln!(
                "keepalive: cannot remove the cgroup {}: {error}",
                self.path.display()
            );
        }
    }
}

/// Removes the cgroups of earlier runs whose keepalive was killed (SIGKILL) and whose
/// processes have all ended; the kernel frees their programs with them. A cgroup whose
/// keepalive still runs is left alone: it may be between creating it and starting
/// COMMAND, with no process in it yet.
fn remove_stale_runs(home: &Path) {
    let Ok(entries) = fs::read_dir(home) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(RUN_PREFIX)) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
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
