//! `keepalive cgroup attach | detach | status | pin`: programs that outlive the
//! command. Each attached cgroup gets a directory of pins under
//! /sys/fs/bpf/keepalive, named by the cgroup's id (the inode number of its
//! directory): the two programs, their settings and their counters. The attachment
//! itself belongs to the cgroup; the pins let a later command find it, read it and
//! remove it.

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use keepalive_config::Config;

use crate::cgroupfs::RootCgroup;
use crate::programs::{COUNTER_NAMES, Loaded, Pinned};
use crate::settings::Settings;
use crate::{Error, cgroupfs, hooks, preflight};

/// Where bpffs is expected, and mounted when it is not.
const BPFFS: &str = "/sys/fs/bpf";
/// keepalive's own directory in it.
const PIN_ROOT: &str = "/sys/fs/bpf/keepalive";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// One cgroup with keepalive attached, as `status` reports it.
#[derive(Debug)]
pub struct Attachment {
    /// The cgroup's id, which names its pin directory.
    pub id: u64,
    /// Its directory, or `None` when the cgroup has been removed since.
    pub cgroup: Option<PathBuf>,
    pub pins: PathBuf,
    pub config: Config,
    /// Named as [`COUNTER_NAMES`].
    pub counters: [(&'static str, u64); COUNTER_NAMES.len()],
}

/// Attaches the programs with `config` to `cgroup`, or gives the programs already
/// attached there the new settings. The root cgroup only with [`RootCgroup::Allow`].
pub fn attach(config: &Config, cgroup: &Path, root: RootCgroup) -> Result<PathBuf, Error> {
    preflight::check()?;
    let mount = cgroupfs::mount_point()?;
    let cgroup = cgroupfs::resolve(&mount, cgroup, root)?;
    let pins = pin_dir(&cgroup)?;
    remove_pins_of_removed_cgroups(&mount);
    let dir = open(&cgroup)?;
    let settings = Settings::from_config(config);
    if let Ok(mut pinned) = Pinned::open(&pins) {
        pinned.set_settings(settings)?;
        pinned
            .attach(dir.as_fd())
            .map_err(|e| cannot_attach(&cgroup, e))?;
        return Ok(cgroup);
    }
    // No pins, or a directory an interrupted run left half-made: start afresh.
    remove_pins(&pins);
    let mut programs = Loaded::load(settings)?;
    fs::create_dir_all(&pins)
        .map_err(|e| Error::new(format!("cannot create {}: {e}", pins.display())))?;
    let done = programs.pin(&pins).and_then(|()| {
        programs
            .attach(dir.as_fd())
            .map_err(|e| cannot_attach(&cgroup, e))
    });
    if done.is_err() {
        remove_pins(&pins);
    }
    done.map(|()| cgroup)
}

/// Detaches keepalive's programs from `cgroup` and removes their pins. The root
/// cgroup only with [`RootCgroup::Allow`], as for attaching: keepalive attached there
/// covers the whole machine, and removing that is as deliberate a step.
pub fn detach(cgroup: &Path, root: RootCgroup) -> Result<PathBuf, Error> {
    preflight::check()?;
    let mount = cgroupfs::mount_point()?;
    let cgroup = cgroupfs::resolve(&mount, cgroup, root)?;
    let pins = pin_dir(&cgroup)?;
    remove_pins_of_removed_cgroups(&mount);
    let pinned = Pinned::open(&pins)
        .map_err(|_| Error::new(format!("keepalive is not attached to {}", cgroup.display())))?;
    match pinned.detach(open(&cgroup)?.as_fd()) {
        Ok(()) => {}
        // Detached by someone else already: only the pins are left to remove.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => {
            return Err(Error::new(format!(
                "cannot detach from {}: {e}",
                cgroup.display()
            )));
        }
    }
    drop(pinned);
    remove_pins(&pins);
    Ok(cgroup)
}

/// Every cgroup keepalive is attached to, or only `cgroup`.
pub fn status(cgroup: Option<&Path>) -> Result<Vec<Attachment>, Error> {
    let mount = cgroupfs::mount_point()?;
    // The root cgroup is allowed here without asking: status only reads, and naming
    // the root shows whether `attach --root` is in effect; nothing can be changed.
    let only = match cgroup {
        Some(path) => Some(
            cgroupfs::id(&cgroupfs::resolve(&mount, path, RootCgroup::Allow)?)
                .map_err(|e| Error::new(format!("cgroup {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let entries = match fs::read_dir(PIN_ROOT) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::new(format!("cannot read {PIN_ROOT}: {e}"))),
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if only.is_some_and(|only| only != id) {
            continue;
        }
        let pinned = Pinned::open(&entry.path())?;
        let counters = pinned.counters();
        found.push(Attachment {
            id,
            cgroup: cgroupfs::find_by_id(&mount, id),
            pins: entry.path(),
            config: pinned.settings()?.to_config(),
            counters: std::array::from_fn(|i| (COUNTER_NAMES[i], counters[i])),
        });
    }
    found.sort_by(|a, b| a.cgroup.cmp(&b.cgroup));
    Ok(found)
}

/// Loads the programs with `config` and pins them in the new directory `dir` on a
/// bpffs, for systemd's BPFProgram= to attach.
pub fn pin(config: &Config, dir: &Path) -> Result<(), Error> {
    preflight::check()?;
    ensure_bpffs()?;
    let mut programs = Loaded::load(Settings::from_config(config))?;
    fs::create_dir(dir).map_err(|e| Error::new(format!("cannot create {}: {e}", dir.display())))?;
    programs.pin(dir).inspect_err(|_| remove_pins(dir))
}

/// The pin directory of the cgroup at `path`, with bpffs mounted.
fn pin_dir(cgroup: &Path) -> Result<PathBuf, Error> {
    ensure_bpffs()?;
    let id = cgroupfs::id(cgroup).map_err(|e| Error::new(format!("{}: {e}", cgroup.display())))?;
    Ok(Path::new(PIN_ROOT).join(id.to_string()))
}

/// Mounts bpffs at /sys/fs/bpf when nothing is mounted there, as systemd does at boot.
fn ensure_bpffs() -> Result<(), Error> {
    if is_bpffs(Path::new(BPFFS)) {
        return Ok(());
    }
    mount_bpffs().map_err(|e| Error::new(format!("cannot mount bpffs at {BPFFS}: {e}")))
}

fn is_bpffs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a zeroed statfs is a valid output buffer; c_path is NUL-terminated.
    unsafe {
        let mut fs: libc::statfs = std::mem::zeroed();
        libc::statfs(c_path.as_ptr(), &mut fs) == 0 && fs.f_type as i64 == BPF_FS_MAGIC
    }
}

fn mount_bpffs() -> io::Result<()> {
    // SAFETY: all strings are NUL-terminated literals; mount reads them only.
    let result = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            c"/sys/fs/bpf".as_ptr(),
            c"bpf".as_ptr(),
            0,
            c"mode=0700".as_ptr().cast(),
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn open(cgroup: &Path) -> Result<fs::File, Error> {
    hooks::open_cgroup(cgroup)
        .map_err(|e| Error::new(format!("cannot open {}: {e}", cgroup.display())))
}

fn cannot_attach(cgroup: &Path, error: io::Error) -> Error {
    let hint = if error.raw_os_error() == Some(libc::EPERM) {
        " (another program is attached there or above it without allowing overrides)"
    } else {
        ""
    };
    Error::new(format!(
        "cannot attach to {}: {error}{hint}",
        cgroup.display()
    ))
}

/// A cgroup removed while attached takes its attachment with it, but not the pins:
/// they would hold the programs in memory for good. Any attach or detach removes them.
fn remove_pins_of_removed_cgroups(mount: &Path) {
    let Ok(entries) = fs::read_dir(PIN_ROOT) else {
        return;
    };
    let ids: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
        .collect();
    if ids.is_empty() {
        return;
    }
    let living = cgroupfs::all_ids(mount);
    for (id, pins) in ids {
        if !living.contains(&id) {
            log::info!("removing the pins of cgroup {id}, which no longer exists");
            remove_pins(&pins);
        }
    }
}

/// Unpins everything in a pin directory and removes it; programs no longer attached
/// or pinned are then freed by the kernel.
fn remove_pins(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let _ = fs::remove_file(entry.path());
        }
    }
    let _ = fs::remove_dir(dir);
}
