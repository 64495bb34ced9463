//! `keepalive cgroup attach | detach | status | pin`: programs that outlive the
//! command. Each attached cgroup gets a directory of pins under
//! /sys/fs/bpf/keepalive, named by the cgroup's id (the inode number of its
//! directory): the two programs, their settings and their counters. The attachment
//! itself belongs to the cgroup; the pins let a later command find it, read it and
//! remove it.
//!
//! Every command that changes pins holds an exclusive lock on /sys/fs/bpf (status a
//! shared one) for as long as it works, so that two attaches at once (two units'
//! ExecStartPre, a retry) end with one attachment and one set of pins, and a status
//! never sees a directory half made.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use crate::cgroupfs::RootCgroup;
use crate::hooks::{self, BPF_F_ALLOW_MULTI, Hook};
use crate::layout::RULE_COUNTER_COUNT;
use crate::programs::{self, COUNTER_NAMES, Identity, Loaded, Pinned};
use crate::rules::Policy;
use crate::{Error, cgroupfs, preflight};

/// Where bpffs is expected.
const BPFFS: &str = "/sys/fs/bpf";
/// keepalive's own directory in it.
const PIN_ROOT: &str = "/sys/fs/bpf/keepalive";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// One cgroup with keepalive attached, as `status` reports it.
#[derive(Debug)]
pub struct Attachment {
    /// The cgroup's id, which names its pin directory.
    pub id: u64,
    /// Its directory, or `None` when it cannot be found: removed since, or outside
    /// the part of the hierarchy this process sees.
    pub cgroup: Option<PathBuf>,
    /// The cgroup's path relative to the cgroup2 mount (`system.slice/nginx.service`,
    /// `/` for the root), as metrics label it; `None` when it cannot be found.
    pub relative: Option<String>,
    /// Whether this is a `keepalive --cgroup` run (its programs go with its command)
    /// rather than an attachment made by `keepalive cgroup attach`.
    pub run: bool,
    /// Where the pins are (for a run: nothing is pinned, and this is empty).
    pub pins: PathBuf,
    /// What the pins hold, or why they cannot be read (a directory an interrupted
    /// attach left half made, which `detach` removes).
    pub state: Result<Details, String>,
}

/// The readable part of an attachment.
#[derive(Debug)]
pub struct Details {
    /// Its settings, filters and rules, as its maps hold them.
    pub policy: Policy,
    /// Per rule, in the rules' order: connections configured, then timeouts by
    /// keepalive, retransmission and connect.
    pub rule_counters: Vec<[u64; RULE_COUNTER_COUNT]>,
    /// Named as [`COUNTER_NAMES`].
    pub counters: [(&'static str, u64); COUNTER_NAMES.len()],
    /// Whether the kernel has both pinned programs attached to the cgroup (it may
    /// have been detached behind keepalive's back, by a privileged process).
    pub attached: bool,
    /// Whether dead connections are counted (`timeouts_*`): not by an attachment an
    /// earlier version made, nor one whose counting link was unpinned by hand; the
    /// next `attach` replaces such programs.
    pub counting: bool,
}

/// Attaches the programs with `policy` to `cgroup`, or gives the programs already
/// attached there the new policy. The root cgroup only with [`RootCgroup::Allow`].
pub fn attach(policy: &Policy, cgroup: &Path, root: RootCgroup) -> Result<PathBuf, Error> {
    policy.check().map_err(Error::new)?;
    preflight::check()?;
    let mount = cgroupfs::mount_point()?;
    let cgroup = cgroupfs::resolve(&mount, cgroup, root)?;
    let _lock = Lock::exclusive()?;
    clean_up_interrupted_attaches(&mount);
    remove_pins_of_removed_cgroups(&mount);
    let pins = pin_dir(&cgroup)?;
    let dir = open(&cgroup)?;
    let fresh = Loaded::load(policy)?;
    let pinned = Pinned::open(&pins);
    // Whole pins that cannot be opened (say, out of file descriptors) are an
    // attachment all the same: taking them for none would attach a second one beside.
    if let Err(error) = &pinned {
        if PIN_NAMES.iter().all(|name| pins.join(name).exists()) {
            return Err(Error::new(format!(
                "cannot open the pins of the attachment at {}: {error}",
                cgroup.display()
            )));
        }
    }
    let ours = pinned.as_ref().ok().and_then(|p| p.identity().ok());
    refuse_keepalive_attached_otherwise(&cgroup, dir.as_fd(), ours)?;
    match pinned {
        Ok(mut pinned) if same_programs(&pinned, &fresh) => {
            let wanted = policy.as_kernel_keeps();
            let held = pinned.policy();
            // Attached as this version attaches them (or not at all), with the same
            // filters and rules: new settings in place, and attached again if someone
            // detached them.
            if held
                .as_ref()
                .is_ok_and(|(held, _)| held.same_slots(&wanted))
                && pinned
                    .identity()
                    .is_ok_and(|ids| exclusive_flags(dir.as_fd(), ids).is_none())
            {
                pinned.set_settings(policy)?;
                pinned
                    .attach(dir.as_fd())
                    .map_err(|e| cannot_attach(&cgroup, dir.as_fd(), e))?;
            } else {
                // Other filters or rules: fresh programs take the place of the same
                // programs, with their counters. Changing rules in place would not do: a
                // connection keeps the number of the rule it matched, which would come to
                // mean another rule, and a connection made meanwhile would see half of
                // each. Attached before the old ones go, the fresh ones take every
                // connection made once the old are detached; one made in between is the
                // old programs', and followed by neither after.
                let (before, counts) = held?;
                let mut fresh = fresh;
                fresh.carry_counters(&pinned, &before, &counts, &wanted)?;
                replace(&cgroup, dir.as_fd(), Some(pinned), fresh, &pins)?
            }
        }
        // None yet, a directory an interrupted attach left half made, or an earlier
        // version's programs: the fresh ones take their place.
        found => replace(&cgroup, dir.as_fd(), found.ok(), fresh, &pins)?,
    }
    Ok(cgroup)
}

/// Whether the pinned programs are this version's, whole: then new settings go into
/// them in place. An attachment that counts nothing (its counting link unpinned) is
/// replaced, counters and all, so that it counts again.
fn same_programs(pinned: &Pinned, fresh: &Loaded) -> bool {
    match (pinned.identity(), fresh.identity()) {
        (Ok(a), Ok(b)) => a.tags == b.tags && pinned.counting(),
        _ => false,
    }
}

/// Attaches `fresh` and pins it at `pins`, in place of `old` if there is one. An
/// earlier version's attachment (BPF_F_ALLOW_OVERRIDE) cannot share the cgroup with
/// a MULTI one, so it is detached first; a MULTI one is detached after, so that the
/// cgroup is never left without keepalive.
fn replace(
    cgroup: &Path,
    dir: BorrowedFd<'_>,
    old: Option<Pinned>,
    mut fresh: Loaded,
    pins: &Path,
) -> Result<(), Error> {
    let old_ids = old.as_ref().and_then(|o| o.identity().ok());
    refuse_other_exclusive_programs(cgroup, dir, old_ids)?;
    let legacy_flags = old_ids.and_then(|ids| exclusive_flags(dir, ids));
    if let (Some(old), Some(_)) = (&old, legacy_flags) {
        log::info!(
            "replacing an earlier version's attachment at {}",
            cgroup.display()
        );
        old.detach(dir).map_err(|e| {
            Error::os(
                format!(
                    "cannot detach the earlier version from {}",
                    cgroup.display()
                ),
                e,
            )
        })?;
    }
    let mut staging = pins.as_os_str().to_owned();
    staging.push(STAGING_SUFFIX);
    let staging = PathBuf::from(staging);
    remove_pins(&staging);
    let done = stage(&mut fresh, &staging)
        .and_then(|()| fresh.attach(dir).map_err(|e| cannot_attach(cgroup, dir, e)));
    if let Err(error) = done {
        remove_pins(&staging);
        if let (Some(old), Some(flags)) = (&old, legacy_flags) {
            let _ = old.restore(dir, flags);
        }
        return Err(error);
    }
    if let Some(old) = &old {
        if legacy_flags.is_none() {
            match old.detach(dir) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => log::warn!(
                    "cannot detach the programs replaced at {}: {e}",
                    cgroup.display()
                ),
            }
        }
    }
    drop(old);
    remove_pins(pins);
    fs::rename(&staging, pins).map_err(|e| {
        Error::os(
            format!("cannot move {} to {}", staging.display(), pins.display()),
            e,
        )
    })
}

/// Pins the fresh programs in a directory of their own, moved into place once they
/// are attached, so that the old pins stay whole until then.
fn stage(fresh: &mut Loaded, staging: &Path) -> Result<(), Error> {
    fs::create_dir_all(staging)
        .map_err(|e| Error::os(format!("cannot create {}", staging.display()), e))?;
    fresh.pin(staging)
}

/// The flags of an earlier version's attachment of these programs at `dir`: `Some`
/// when they are attached there other than with BPF_F_ALLOW_MULTI.
fn exclusive_flags(dir: BorrowedFd<'_>, old: Identity) -> Option<u32> {
    let attached = hooks::query(dir, Hook::SockOps).ok()?;
    (attached.flags != BPF_F_ALLOW_MULTI && attached.ids.contains(&old.ids[0]))
        .then_some(attached.flags)
}

/// The attach flags of `cgroup`'s programs at `hook`, and the ids of those that are not
/// `ours`.
fn not_ours(
    cgroup: &Path,
    dir: BorrowedFd<'_>,
    hook: Hook,
    ours: Option<Identity>,
) -> Result<(u32, Vec<u32>), Error> {
    let attached = hooks::query(dir, hook).map_err(|e| {
        Error::os(
            format!("cannot query the programs of {}", cgroup.display()),
            e,
        )
    })?;
    let foreign = attached
        .ids
        .into_iter()
        .filter(|id| !ours.is_some_and(|o| o.ids.contains(id)))
        .collect();
    Ok((attached.flags, foreign))
}

/// Another tool's program attached to `cgroup` without BPF_F_ALLOW_MULTI leaves no
/// room beside it; keepalive never removes it, and says which it is.
fn refuse_other_exclusive_programs(
    cgroup: &Path,
    dir: BorrowedFd<'_>,
    ours: Option<Identity>,
) -> Result<(), Error> {
    for hook in Hook::BOTH {
        let (flags, foreign) = not_ours(cgroup, dir, hook, ours)?;
        if flags != BPF_F_ALLOW_MULTI && !foreign.is_empty() {
            return Err(Error::new(format!(
                "cannot attach to {}: another program is attached to its {} hook without \
                 BPF_F_ALLOW_MULTI ({}), which leaves no room beside it; keepalive never \
                 removes another tool's program",
                cgroup.display(),
                hook.name(),
                describe_programs(&foreign)
            )));
        }
    }
    Ok(())
}

/// keepalive's programs attached to `cgroup` by other means (systemd's BPFProgram=
/// with the programs of `keepalive cgroup pin`, or bpftool) run before an attach's own
/// at the same level and would claim every connection: the new settings would show
/// in `status` and apply nowhere. Refused, naming them, where privileges let names be
/// read (CAP_SYS_ADMIN); without them this cannot be told.
fn refuse_keepalive_attached_otherwise(
    cgroup: &Path,
    dir: BorrowedFd<'_>,
    ours: Option<Identity>,
) -> Result<(), Error> {
    let (_, foreign) = not_ours(cgroup, dir, Hook::SockOps, ours)?;
    let mut named = Vec::new();
    let mut others = Vec::new();
    for program in aya::programs::loaded_programs().flatten() {
        if foreign.contains(&program.id()) {
            named.push(program.id());
            if program.name_as_str() == Some(programs::SOCK_OPS) {
                others.push(program.id());
            }
        }
    }
    let unnamed: Vec<String> = foreign
        .iter()
        .filter(|id| !named.contains(id))
        .map(|id| format!("id {id}"))
        .collect();
    if !unnamed.is_empty() {
        log::warn!(
            "other sock_ops programs are attached to {} ({}), whose names cannot be read \
             without CAP_SYS_ADMIN: if they are keepalive's (BPFProgram= with `keepalive \
             cgroup pin`), they claim its connections before this attachment does",
            cgroup.display(),
            unnamed.join(", ")
        );
    }
    if others.is_empty() {
        return Ok(());
    }
    Err(Error::new(format!(
        "cannot attach to {}: keepalive's programs are attached there already by other \
         means ({}: systemd's BPFProgram= with `keepalive cgroup pin`, or bpftool, or an \
         attachment whose pins were removed), and they would keep claiming its \
         connections; change the settings where they were pinned, or detach them first \
         (bpftool cgroup detach {} sock_ops id N, and setsockopt)",
        cgroup.display(),
        describe_programs(&others),
        cgroup.display()
    )))
}

/// "id 42 (name foo), id 43": names are read where privileges allow.
fn describe_programs(ids: &[u32]) -> String {
    let names: Vec<(u32, String)> = aya::programs::loaded_programs()
        .flatten()
        .filter(|p| ids.contains(&p.id()))
        .map(|p| (p.id(), p.name_as_str().unwrap_or_default().to_string()))
        .collect();
    ids.iter()
        .map(|id| match names.iter().find(|(i, _)| i == id) {
            Some((_, name)) if !name.is_empty() => format!("id {id}, name {name}"),
            _ => format!("id {id}"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Detaches keepalive's programs from `cgroup` and removes their pins. The root
/// cgroup only with [`RootCgroup::Allow`], as for attaching: keepalive attached there
/// covers the whole machine, and removing that is as deliberate a step.
pub fn detach(cgroup: &Path, root: RootCgroup) -> Result<PathBuf, Error> {
    preflight::check()?;
    let mount = cgroupfs::mount_point()?;
    let cgroup = cgroupfs::resolve(&mount, cgroup, root)?;
    let _lock = Lock::exclusive()?;
    clean_up_interrupted_attaches(&mount);
    remove_pins_of_removed_cgroups(&mount);
    let pins = pin_dir(&cgroup)?;
    let pinned = match Pinned::open(&pins) {
        Ok(pinned) => pinned,
        // Half made by an interrupted attach: nothing of it can be attached
        // without all of it, so removing it is all there is to do.
        Err(_) if pins.exists() => {
            remove_pins(&pins);
            remove_empty_root();
            return Ok(cgroup);
        }
        Err(_) => {
            remove_empty_root(); // after cleaning up an interrupted attach, say
            return Err(Error::new(format!(
                "keepalive is not attached to {}",
                cgroup.display()
            )));
        }
    };
    match pinned.detach(open(&cgroup)?.as_fd()) {
        Ok(()) => {}
        // Detached by someone else already: only the pins are left to remove.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => {
            return Err(Error::os(
                format!("cannot detach from {}", cgroup.display()),
                e,
            ));
        }
    }
    drop(pinned);
    remove_pins(&pins);
    remove_empty_root();
    Ok(cgroup)
}

/// The record of which sockets the attachment at `cgroup` (an absolute path, as
/// [`attach`] returns it) configured, for `attach --existing`.
pub fn claims(cgroup: &Path) -> Result<programs::Claims, Error> {
    let target = pin_dir(cgroup)?;
    let others: Vec<PathBuf> = fs::read_dir(PIN_ROOT)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|dir| *dir != target)
                .collect()
        })
        .unwrap_or_default();
    programs::Claims::open(&target, &others)
}

/// Whether keepalive's programs are attached to `cgroup` itself (by `attach`, a
/// `--cgroup` run, or systemd's BPFProgram=): `attach --existing` on a cgroup above it
/// leaves its processes to it, whose settings they get. An attachment of keepalive's
/// own is known by its pins, a run by its cgroup's name; others (BPFProgram=) by their
/// program's name, which only CAP_SYS_ADMIN can read.
pub fn attached_here(cgroup: &Path) -> bool {
    let pinned = pin_dir(cgroup).is_ok_and(|dir| dir.exists());
    let run = cgroup
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with(crate::run::RUN_PREFIX));
    if pinned || run {
        return true;
    }
    let Ok(dir) = hooks::open_cgroup(cgroup) else {
        return false;
    };
    hooks::query(dir.as_fd(), Hook::SockOps)
        .is_ok_and(|attached| programs::keepalive_sock_ops(&attached.ids).is_some())
}

/// Adds what `attach --existing` did to the counters of the attachment at `cgroup`
/// (an absolute path, as [`attach`] returns it): once more applied, and the
/// connections and options it changed. `status` then counts the connections that were
/// open at the attach as covered.
pub fn record_existing(cgroup: &Path, connections: u64, options: u64) -> Result<(), Error> {
    use crate::layout::{
        COUNTER_EXISTING_APPLIED, COUNTER_EXISTING_CONNECTIONS, COUNTER_EXISTING_OPTIONS,
    };
    let _lock = Lock::exclusive()?;
    let mut pinned = Pinned::open(&pin_dir(cgroup)?)?;
    for (counter, n) in [
        (COUNTER_EXISTING_APPLIED, 1),
        (COUNTER_EXISTING_CONNECTIONS, connections),
        (COUNTER_EXISTING_OPTIONS, options),
    ] {
        pinned.add_to_counter(counter, n)?;
    }
    Ok(())
}

/// Every cgroup keepalive is attached to, or only `cgroup`.
pub fn status(cgroup: Option<&Path>) -> Result<Vec<Attachment>, Error> {
    let mount = cgroupfs::mount_point()?;
    // The root cgroup is allowed here without asking: status only reads, and naming
    // the root shows whether `attach --root` is in effect; nothing can be changed.
    let only = match cgroup {
        Some(path) => Some(
            cgroupfs::id(&cgroupfs::resolve(&mount, path, RootCgroup::Allow)?)
                .map_err(|e| Error::os(format!("cgroup {}", path.display()), e))?,
        ),
        None => None,
    };
    let cgroups = cgroupfs::by_id(&mount);
    let mut found = pinned_attachments(&mount, &cgroups, only)?;
    found.sort_by(|a, b| a.cgroup.cmp(&b.cgroup));
    found.extend(
        crate::run::live_runs(&mount)
            .into_iter()
            .filter_map(|path| run_entry(&mount, path))
            .filter(|run| only.is_none_or(|only| only == run.id)),
    );
    Ok(found)
}

/// A `keepalive --cgroup` run, read through the kernel: nothing of it is pinned.
fn run_entry(mount: &Path, path: PathBuf) -> Option<Attachment> {
    let id = cgroupfs::id(&path).ok()?;
    let dir = hooks::open_cgroup(&path).ok()?;
    let attached = hooks::query(dir.as_fd(), Hook::SockOps).ok()?;
    let state = match programs::keepalive_sock_ops(&attached.ids) {
        Some(program) => programs::read_running(&program)
            .map(|(policy, rule_counters, counters)| Details {
                policy,
                rule_counters: rule_counters.iter().map(|c| c.n).collect(),
                counters: std::array::from_fn(|i| (COUNTER_NAMES[i], counters[i])),
                attached: true,
                counting: true, // held by the run's own process
            })
            .map_err(|e| e.to_string()),
        None if attached.ids.is_empty() => return None, // starting, or ending
        None => Err("its programs cannot be identified (program names need \
                     CAP_SYS_ADMIN)"
            .to_string()),
    };
    Some(Attachment {
        id,
        relative: Some(relative_to(mount, &path)),
        cgroup: Some(path),
        run: true,
        pins: PathBuf::new(),
        state,
    })
}

/// The attachments pinned under /sys/fs/bpf/keepalive, or only the one of cgroup `only`.
fn pinned_attachments(
    mount: &Path,
    cgroups: &std::collections::HashMap<u64, PathBuf>,
    only: Option<u64>,
) -> Result<Vec<Attachment>, Error> {
    if !is_bpffs(Path::new(BPFFS)) {
        return Ok(Vec::new()); // nothing can have been pinned
    }
    let Some(_lock) = Lock::shared()? else {
        return Ok(Vec::new());
    };
    let entries = match fs::read_dir(PIN_ROOT) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::os(format!("cannot read {PIN_ROOT}"), e)),
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some((id, staging)) = entry.file_name().to_str().and_then(pin_dir_name) else {
            continue;
        };
        if only.is_some_and(|only| only != id) {
            continue;
        }
        let cgroup = cgroups.get(&id).cloned();
        let state = if staging {
            Err(
                "an interrupted attach left these pins; the next `keepalive cgroup attach` \
                 or `detach` of this cgroup completes or undoes it"
                    .to_string(),
            )
        } else {
            // One that cannot be read is that entry's problem, not every other's.
            read_attachment(&entry.path(), cgroup.as_deref()).unwrap_or_else(|e| Err(e.to_string()))
        };
        let relative = cgroup.as_deref().map(|c| relative_to(mount, c));
        found.push(Attachment {
            id,
            cgroup,
            relative,
            run: false,
            pins: entry.path(),
            state,
        });
    }
    Ok(found)
}

/// `path` relative to the cgroup2 mount, `/` for the root cgroup.
fn relative_to(mount: &Path, path: &Path) -> String {
    match path.strip_prefix(mount) {
        Ok(rest) if rest.as_os_str().is_empty() => "/".to_string(),
        Ok(rest) => rest.display().to_string(),
        Err(_) => path.display().to_string(),
    }
}

/// What the pins say, or why they cannot be read: `Err` (shown by `status`) when one
/// is missing, which only an interrupted attach leaves; any other failure (say, no
/// permission to read them) is the command's error.
fn read_attachment(pins: &Path, cgroup: Option<&Path>) -> Result<Result<Details, String>, Error> {
    let missing: Vec<&str> = PIN_NAMES
        .iter()
        .copied()
        .filter(|name| fs::symlink_metadata(pins.join(name)).is_err())
        .collect();
    if !missing.is_empty() {
        return Ok(Err(format!(
            "incomplete pins (an interrupted attach?): no {}; `keepalive cgroup detach` \
             removes them",
            missing.join(", ")
        )));
    }
    let pinned = Pinned::open(pins)?;
    let counters = pinned.counters();
    let attached = match cgroup {
        Some(cgroup) => is_attached(&pinned, cgroup),
        None => false,
    };
    let (policy, rule_counters) = pinned.policy()?;
    Ok(Ok(Details {
        policy,
        rule_counters: rule_counters.iter().map(|c| c.n).collect(),
        counters: std::array::from_fn(|i| (COUNTER_NAMES[i], counters[i])),
        attached,
        counting: pinned.counting(),
    }))
}

/// The names of the pins of an attachment.
const PIN_NAMES: [&str; 4] = [
    programs::pin::SOCK_OPS,
    programs::pin::SETSOCKOPT,
    programs::pin::SETTINGS,
    programs::pin::COUNTERS,
];

/// A pin directory's cgroup id, and whether it is a staging directory (`ID-new`) an
/// attach was interrupted in.
fn pin_dir_name(name: &str) -> Option<(u64, bool)> {
    match name.strip_suffix(STAGING_SUFFIX) {
        Some(id) => Some((id.parse().ok()?, true)),
        None => Some((name.parse().ok()?, false)),
    }
}

/// What a staging directory's name adds to its cgroup id (bpffs refuses dots).
const STAGING_SUFFIX: &str = "-new";

/// Whether the kernel has both pinned programs attached to `cgroup` itself.
fn is_attached(pinned: &Pinned, cgroup: &Path) -> bool {
    let (Ok(identity), Ok(dir)) = (pinned.identity(), hooks::open_cgroup(cgroup)) else {
        return false;
    };
    Hook::BOTH.iter().zip(identity.ids).all(|(&hook, id)| {
        hooks::query(dir.as_fd(), hook).is_ok_and(|attached| attached.ids.contains(&id))
    })
}

/// Loads the programs with `policy` and pins them in the new directory `dir` on a
/// bpffs, for systemd's BPFProgram= to attach.
pub fn pin(policy: &Policy, dir: &Path) -> Result<PathBuf, Error> {
    policy.check().map_err(Error::new)?;
    preflight::check()?;
    ensure_bpffs()?;
    // systemd's BPFProgram= takes absolute paths only.
    let dir = &std::path::absolute(dir)
        .map_err(|e| Error::os(format!("cannot make {} absolute", dir.display()), e))?;
    let parent = match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if !is_bpffs(parent) {
        return Err(Error::new(format!(
            "{} is not on a bpffs: programs can only be pinned there (under {BPFFS}, \
             for systemd's BPFProgram=)",
            dir.display()
        )));
    }
    let mut programs = Loaded::load(policy)?;
    fs::create_dir(dir).map_err(|e| Error::os(format!("cannot create {}", dir.display()), e))?;
    programs.pin(dir).inspect_err(|_| remove_pins(dir))?;
    Ok(dir.clone())
}

/// The pin directory of the cgroup at `path`.
fn pin_dir(cgroup: &Path) -> Result<PathBuf, Error> {
    let id = cgroupfs::id(cgroup).map_err(|e| Error::os(cgroup.display().to_string(), e))?;
    Ok(Path::new(PIN_ROOT).join(id.to_string()))
}

/// An flock on keepalive's own directory, /sys/fs/bpf/keepalive, held until dropped.
/// The directory is root's and closed to everyone else (see [`open_pin_root`]), so
/// no other user can take the lock and stall keepalive. It is removed with the last
/// attachment: a command that waited for the lock on a directory removed meanwhile
/// takes it again on the current one.
struct Lock {
    _held: fs::File,
}

impl Lock {
    /// For commands that change pins: makes the directory if needed.
    fn exclusive() -> Result<Lock, Error> {
        ensure_bpffs()?;
        Lock::take(libc::LOCK_EX, true).map(|lock| lock.expect("made if missing"))
    }

    /// For `status`: `None` when there is no directory, so nothing is pinned.
    fn shared() -> Result<Option<Lock>, Error> {
        Lock::take(libc::LOCK_SH, false)
    }

    fn take(operation: libc::c_int, create: bool) -> Result<Option<Lock>, Error> {
        use std::os::unix::fs::MetadataExt;
        loop {
            let Some(dir) = open_pin_root(create)? else {
                return Ok(None);
            };
            // SAFETY: flock on a descriptor we own; it touches no memory.
            if unsafe { libc::flock(dir.as_raw_fd(), operation) } != 0 {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::os(format!("cannot lock {PIN_ROOT}"), error));
            }
            let locked = dir.metadata().map(|m| m.ino()).ok();
            let current = fs::symlink_metadata(PIN_ROOT).map(|m| m.ino()).ok();
            if locked.is_some() && locked == current {
                return Ok(Some(Lock { _held: dir }));
            }
        }
    }
}

/// Opens /sys/fs/bpf/keepalive, made first (mode 0700) when `create` says so; `None`
/// when it does not exist and was not to be made.
///
/// Only a directory of root's (or this process's user) that no one else may open is
/// used: a bpffs mounted with its default mode (1777) lets any user make it, or a link
/// in its place, whenever nothing is attached, and whoever owns it could move or
/// replace what keepalive pins there, or hold its lock. Such a thing is moved aside
/// (to keepalive-untrusted-RANDOM, left for its owner) by a command that makes the
/// directory; `status` only says so. A directory of ours that others may open (0.4.0
/// made it 0755) is closed first.
fn open_pin_root(create: bool) -> Result<Option<fs::File>, Error> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let trusted =
        |meta: &fs::Metadata| meta.file_type().is_dir() && (meta.uid() == 0 || meta.uid() == euid);
    if create {
        match fs::DirBuilder::new().mode(0o700).create(PIN_ROOT) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::os(format!("cannot create {PIN_ROOT}"), e)),
        }
        let meta = fs::symlink_metadata(PIN_ROOT)
            .map_err(|e| Error::os(format!("cannot read {PIN_ROOT}"), e))?;
        if !trusted(&meta) {
            let aside = format!("{BPFFS}/keepalive-untrusted-{:016x}", crate::run::random()?);
            fs::rename(PIN_ROOT, &aside).map_err(|e| {
                Error::os(
                    format!(
                        "{PIN_ROOT} was made by uid {} and keepalive will not pin there; \
                         moving it aside to {aside} failed",
                        meta.uid()
                    ),
                    e,
                )
            })?;
            log::warn!(
                "{PIN_ROOT} was made by uid {}: moved aside to {aside}",
                meta.uid()
            );
            return open_pin_root(create);
        }
        if meta.mode() & 0o077 != 0 {
            fs::set_permissions(PIN_ROOT, fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::os(format!("cannot close {PIN_ROOT} to other users"), e))?;
        }
    }
    let meta = match fs::symlink_metadata(PIN_ROOT) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound && !create => return Ok(None),
        Err(e) => return Err(Error::os(format!("cannot read {PIN_ROOT}"), e)),
    };
    if !trusted(&meta) {
        return Err(Error::new(format!(
            "{PIN_ROOT} was made by uid {}, not by keepalive, and is not read; the next \
             `keepalive cgroup attach` or `detach` (as root) moves it aside",
            meta.uid()
        )));
    }
    let dir = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(PIN_ROOT)
        .map_err(|e| match e.kind() {
            io::ErrorKind::PermissionDenied => Error::os(
                format!("cannot open {PIN_ROOT} (it is root's: run this as root)"),
                e,
            ),
            _ => Error::os(format!("cannot open {PIN_ROOT}"), e),
        })?;
    Ok(Some(dir))
}

/// Makes sure /sys/fs/bpf is a bpffs that every later keepalive command will see:
/// the one there already, or one mounted now in the host's own mount namespace (as
/// systemd does at boot). Anywhere else (a container, `unshare -m`) a bpffs mounted
/// here would vanish with the namespace and take the pins with it, leaving an
/// attachment no later command could find: refused instead.
fn ensure_bpffs() -> Result<(), Error> {
    let path = Path::new(BPFFS);
    if is_bpffs(path) {
        return Ok(());
    }
    if !in_hosts_mount_namespace() {
        return Err(Error::new(format!(
            "no bpffs is mounted at {BPFFS} here, and keepalive pins its programs there so \
             that later commands find them; a bpffs mounted in this mount namespace would \
             not outlive it: mount the host's (on the host: mount -t bpf bpf {BPFFS}; in a \
             container: bind-mount the host's {BPFFS})"
        )));
    }
    mount_bpffs().map_err(|e| Error::os(format!("cannot mount bpffs at {BPFFS}"), e))
}

/// Whether this process shares the mount namespace of the host's init: its own PID
/// namespace is the initial one (a fixed inode number), and its mount namespace is
/// PID 1's. Unknown (PID 1's namespace unreadable) counts as no.
fn in_hosts_mount_namespace() -> bool {
    const PROC_PID_INIT_INO: u64 = 0xEFFF_FFFC;
    let inode = |path: &str| fs::metadata(path).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
    matches!(inode("/proc/self/ns/pid"), Ok(PROC_PID_INIT_INO))
        && matches!((inode("/proc/self/ns/mnt"), inode("/proc/1/ns/mnt")), (Ok(a), Ok(b)) if a == b)
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
        .map_err(|e| Error::os(format!("cannot open {}", cgroup.display()), e))
}

fn cannot_attach(cgroup: &Path, dir: BorrowedFd<'_>, error: io::Error) -> Error {
    if error.raw_os_error() == Some(libc::EPERM) {
        let own = refuse_other_exclusive_programs(cgroup, dir, None).err();
        return own.unwrap_or_else(|| {
            Error::os(
                format!(
                    "cannot attach to {} (a program attached to a cgroup above it without \
                     BPF_F_ALLOW_MULTI forbids attaching below it)",
                    cgroup.display()
                ),
                error,
            )
        });
    }
    Error::os(format!("cannot attach to {}", cgroup.display()), error)
}

/// A cgroup removed while attached takes its attachment with it, but not the pins:
/// they would hold the programs in memory for good. Any attach or detach removes
/// them, but only where a missing cgroup is certainly gone: when this process sees
/// the whole hierarchy (the initial cgroup namespace, the mount's root at the
/// hierarchy's root). From inside a container's cgroup namespace, the cgroups outside
/// it are only out of sight.
fn remove_pins_of_removed_cgroups(mount: &Path) {
    if !cgroupfs::sees_whole_hierarchy(mount) {
        return;
    }
    let Ok(entries) = fs::read_dir(PIN_ROOT) else {
        return;
    };
    let ids: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| Some((pin_dir_name(e.file_name().to_str()?)?.0, e.path())))
        .collect();
    if ids.is_empty() {
        return;
    }
    let living = cgroupfs::by_id(mount);
    for (id, pins) in ids {
        if !living.contains_key(&id) {
            log::info!("removing the pins of cgroup {id}, which no longer exists");
            remove_pins(&pins);
        }
    }
}

/// Finishes what interrupted attaches left: staging directories (`ID-new`). An attach
/// pins the new programs there, attaches them, detaches and unpins the old ones, then
/// moves the staging directory into place; killed on the way, it leaves one of:
/// - new programs not attached (killed before attaching): removed;
/// - new and old both attached (killed before detaching the old): the new ones are
///   detached and removed, the old attachment stays as it was;
/// - new ones attached and the old ones detached or gone (killed after that, or an
///   earlier version's attachment, which is detached first): the new ones are moved
///   into place, so that the cgroup keeps keepalive.
///
/// A staging directory of a cgroup out of sight (a cgroup namespace) is left for a
/// command that sees it; one of a cgroup that is gone is removed.
fn clean_up_interrupted_attaches(mount: &Path) {
    let Ok(entries) = fs::read_dir(PIN_ROOT) else {
        return;
    };
    let staged: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| match pin_dir_name(e.file_name().to_str()?)? {
            (id, true) => Some((id, e.path())),
            (_, false) => None,
        })
        .collect();
    if staged.is_empty() {
        return;
    }
    let cgroups = cgroupfs::by_id(mount);
    for (id, staging) in staged {
        let pins = Path::new(PIN_ROOT).join(id.to_string());
        let cgroup = match cgroups.get(&id).cloned() {
            Some(cgroup) => cgroup,
            None if !cgroupfs::sees_whole_hierarchy(mount) => continue,
            None => {
                remove_pins(&staging);
                continue;
            }
        };
        let new = Pinned::open(&staging).ok();
        let new_attached = new.as_ref().is_some_and(|p| is_attached(p, &cgroup));
        let old_attached = Pinned::open(&pins).is_ok_and(|p| is_attached(&p, &cgroup));
        if new_attached && !old_attached {
            log::info!("completing an interrupted attach to {}", cgroup.display());
            remove_pins(&pins);
            if fs::rename(&staging, &pins).is_ok() {
                continue;
            }
        }
        if let (Some(new), Ok(dir)) = (&new, hooks::open_cgroup(&cgroup)) {
            let _ = new.detach(dir.as_fd());
        }
        log::info!(
            "removing the pins of an interrupted attach: {}",
            staging.display()
        );
        remove_pins(&staging);
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

/// keepalive's own directory goes with its last attachment (the bpffs stays: other
/// tools' pins live there).
fn remove_empty_root() {
    let _ = fs::remove_dir(PIN_ROOT);
}
