//! Whether a command a test runs (a script a user runs, above all) leaves anything
//! behind: a process, a network namespace, a cgroup or a BPF program. A `Watch` takes
//! a snapshot of the machine, runs the command marked so that what it starts can be
//! told from the rest of the machine (other tests and other users run at the same
//! time), and once the command has ended compares. Whatever the command left is named
//! in the test's failure, and removed, so that a failing check leaves nothing either.
//!
//! What counts as the command's:
//! - a process whose environment holds the watch's marker (everything the command
//!   starts inherits it, unless a program clears its environment), or that is in the
//!   watch's own cgroup (as root: the command starts there, and everything it starts
//!   stays there unless it moves itself out);
//! - a network namespace that did not exist before and that such a process holds, and
//!   any new named one (`ip netns list`) that no other running test accounts for;
//! - a cgroup made below the watch's cgroup, and any new one elsewhere that no other
//!   running process accounts for;
//! - a new BPF program (`bpftool prog show`) that no other running process holds
//!   (fdinfo of its descriptors) and that is not attached (`bpftool cgroup tree`) to a
//!   cgroup named for another running process, as keepalive's and the tests' are.
//!
//! Without root there is no watch cgroup (the marker alone tells), and no BPF program
//! to look for where the kernel refuses unprivileged BPF.
//!
//! Anything found is given a few seconds to go (the kernel frees a network namespace
//! or a BPF program a moment after its last user) before it counts.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::support::{self, TempDir};

/// The environment variable every process the command starts inherits.
const MARKER: &str = "KEEPALIVE_TEST_WATCH";
/// Prefix of the cgroups the watches make: `ka-watch-<pid of the test>-<n>`.
const CGROUP_PREFIX: &str = "ka-watch-";
/// How long what was found may take to go away before it counts as left behind.
const SETTLE: Duration = Duration::from_secs(5);

/// Watches run one at a time in a test binary: the snapshots are of the whole machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub struct Watch {
    /// `MARKER=value`, as it appears in /proc/PID/environ.
    marker: String,
    /// The cgroup the command starts in (as root), as a path and as /proc/PID/cgroup
    /// writes it (relative to the cgroup2 mount, with a leading slash).
    cgroup: Option<(PathBuf, String)>,
    mount: Option<PathBuf>,
    before: Snapshot,
    _alone: MutexGuard<'static, ()>,
}

/// The machine's processes, network namespaces, cgroups and BPF programs at a moment.
struct Snapshot {
    processes: Vec<Process>,
    /// Named network namespaces (/run/netns, as `ip netns list` reads them) by name.
    named: BTreeMap<String, Option<u64>>,
    /// Cgroup directories, relative to the cgroup2 mount.
    cgroups: BTreeSet<PathBuf>,
    /// BPF programs by id; None where they cannot be listed.
    programs: Option<BTreeMap<u32, Program>>,
}

#[derive(Clone, Debug)]
struct Process {
    pid: i32,
    ppid: i32,
    zombie: bool,
    command: String,
    /// The inode of its network namespace, where it can be read.
    net: Option<u64>,
    /// Whether it is the watched command's (marker or cgroup).
    ours: bool,
    /// The BPF programs it holds open (its program and link descriptors' fdinfo).
    programs: Vec<u32>,
}

#[derive(Clone, Debug)]
struct Program {
    /// bpftool's first line about it: id, type, name, tag.
    summary: String,
    /// The processes holding it open, where bpftool lists them (not every build does).
    holders: Vec<i32>,
    /// The cgroups it is attached to (`bpftool cgroup tree`).
    cgroups: Vec<PathBuf>,
}

impl Watch {
    /// A watch, or None (after `support::require`) where the machine cannot be watched:
    /// BPF programs are counted with bpftool, which must then be installed.
    pub fn new() -> Option<Watch> {
        let alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let programs_matter = bpf_listable();
        if programs_matter
            && !support::require(
                bpf_programs(None).is_some(),
                "bpftool (package bpftool) is needed to list the BPF programs",
            )
        {
            return None;
        }
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let id = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mount = cgroup2_mount();
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let cgroup = mount.as_ref().filter(|_| root).and_then(|mount| {
            remove_stale_cgroups(mount);
            let relative = format!(
                "{}/{CGROUP_PREFIX}{id}",
                own_cgroup()?.trim_end_matches('/')
            );
            let path = mount.join(relative.trim_start_matches('/'));
            std::fs::create_dir(&path).ok()?;
            Some((path, relative))
        });
        let marker = format!("{MARKER}={id}");
        let mut watch = Watch {
            marker,
            cgroup,
            mount,
            before: Snapshot {
                processes: Vec::new(),
                named: BTreeMap::new(),
                cgroups: BTreeSet::new(),
                programs: None,
            },
            _alone: alone,
        };
        watch.before = watch.snapshot();
        Some(watch)
    }

    /// Starts `command` watched: marked, in the watch's cgroup, in a process group of
    /// its own (which the test can signal as a terminal would), its output in files.
    pub fn start(&self, mut command: Command, name: &str) -> Run {
        let dir = TempDir::new(&format!("watch-{name}"));
        let (key, value) = self.marker.split_once('=').expect("MARKER=value");
        command
            .env(key, value)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.0.join("stdout")).expect("stdout file"))
            .stderr(std::fs::File::create(dir.0.join("stderr")).expect("stderr file"))
            .process_group(0);
        if let Some((path, _)) = &self.cgroup {
            support::enter_cgroup(&mut command, path);
        }
        let child = command.spawn().expect("the watched command starts");
        Run { child, dir }
    }

    /// Runs `command` watched to its end (killing its process group after `limit`).
    pub fn run(&self, command: Command, name: &str, limit: Duration) -> Output {
        self.start(command, name).wait(limit)
    }

    /// Fails the test, naming each thing the command left behind (and with `output`,
    /// the command's), after removing them.
    pub fn assert_clean(self, what: &str, output: &Output) {
        let left = self.left_behind();
        assert!(
            left.is_empty(),
            "{what} left behind:\n  {}\n{what}: {:?}\nstdout:\n{}\nstderr:\n{}",
            left.join("\n  "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// What the command left, one line each, once things had SETTLE to go. (Dropping
    /// the watch then removes it.)
    pub fn left_behind(&self) -> Vec<String> {
        let deadline = Instant::now() + SETTLE;
        loop {
            let left = self.found();
            if left.is_empty() || Instant::now() > deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            processes: self.processes(),
            named: named_namespaces(),
            cgroups: self.mount.as_deref().map(cgroups).unwrap_or_default(),
            programs: bpf_listable()
                .then(|| bpf_programs(self.mount.as_deref()))
                .flatten(),
        }
    }

    /// Everything of the command's there is now, one line each.
    fn found(&self) -> Vec<String> {
        let now = self.snapshot();
        let mut left = Vec::new();
        let alive = |pid: i32| now.processes.iter().any(|p| p.pid == pid && !p.zombie);
        // Not the command's: the test's own process (another test of the same binary
        // may be running), and any other running process that is not marked.
        let own = std::process::id() as i32;
        let foreign = |pid: i32| {
            pid == own
                || now
                    .processes
                    .iter()
                    .any(|p| p.pid == pid && !p.zombie && !p.ours)
        };
        for p in now.processes.iter().filter(|p| p.ours && !p.zombie) {
            left.push(format!(
                "process {} (parent {}): {}",
                p.pid, p.ppid, p.command
            ));
        }

        // Network namespaces: new ones its processes hold, and new named ones.
        let old: BTreeSet<u64> = self
            .before
            .processes
            .iter()
            .filter_map(|p| p.net)
            .chain(self.before.named.values().flatten().copied())
            .collect();
        let mut held: BTreeMap<u64, Vec<i32>> = BTreeMap::new();
        for p in now.processes.iter().filter(|p| p.ours && !p.zombie) {
            if let Some(net) = p.net.filter(|net| !old.contains(net)) {
                held.entry(net).or_default().push(p.pid);
            }
        }
        for (net, pids) in held {
            left.push(format!(
                "network namespace net:[{net}], held by process {pids:?}"
            ));
        }
        for (name, inode) in &now.named {
            if self.before.named.contains_key(name) {
                continue;
            }
            // The network tests' beds are named ka-<pid of their test>-...: a running
            // test's bed is its own business.
            let owner = name
                .strip_prefix("ka-")
                .and_then(|rest| rest.split('-').next()?.parse().ok());
            if owner.is_some_and(foreign) {
                continue;
            }
            let inode = inode.map_or(String::new(), |i| format!(" (net:[{i}])"));
            left.push(format!(
                "named network namespace {name}{inode} (ip netns list)"
            ));
        }

        // Cgroups: any below the watch's own, and new ones elsewhere nobody else runs in.
        if let Some(mount) = &self.mount {
            for dir in now.cgroups.difference(&self.before.cgroups) {
                let path = mount.join(dir);
                let inside = self
                    .cgroup
                    .as_ref()
                    .is_some_and(|(own, _)| path.starts_with(own));
                let occupied = || {
                    std::fs::read_to_string(path.join("cgroup.procs"))
                        .unwrap_or_default()
                        .lines()
                        .filter_map(|l| l.parse().ok())
                        .any(foreign)
                };
                if !inside && (named_for_other(&path, foreign) || occupied() || !path.exists()) {
                    continue;
                }
                left.push(format!("cgroup {}", path.display()));
            }
        }

        // BPF programs: new ones that no other running process holds, and that are not
        // attached to another running process's cgroup.
        if let (Some(before), Some(now_programs)) = (&self.before.programs, &now.programs) {
            for (id, program) in now_programs {
                if before.contains_key(id) {
                    continue;
                }
                let holders: BTreeSet<i32> = program
                    .holders
                    .iter()
                    .copied()
                    .chain(
                        now.processes
                            .iter()
                            .filter(|p| p.programs.contains(id))
                            .map(|p| p.pid),
                    )
                    .filter(|&p| alive(p))
                    .collect();
                let inside = |c: &PathBuf| {
                    self.cgroup
                        .as_ref()
                        .is_some_and(|(own, _)| c.starts_with(own))
                };
                let elsewhere = program
                    .cgroups
                    .iter()
                    .any(|c| !inside(c) && named_for_other(c, foreign));
                if holders.iter().any(|&pid| foreign(pid)) || elsewhere {
                    continue;
                }
                left.push(format!(
                    "BPF program {} (held by processes {holders:?}, attached to {:?})",
                    program.summary, program.cgroups
                ));
            }
        }
        left
    }

    /// The processes of the machine, each marked as the command's or not.
    fn processes(&self) -> Vec<Process> {
        let own = std::process::id() as i32;
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut processes = Vec::new();
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            if pid == own {
                continue;
            }
            let dir = entry.path();
            // The state and the parent come after the command name, which may hold
            // spaces and parentheses: after the last ')'.
            let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
                continue; // gone meanwhile
            };
            let mut fields = stat
                .rsplit_once(')')
                .map_or("", |(_, rest)| rest)
                .split_whitespace();
            let zombie = fields.next() == Some("Z");
            let ppid = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            let marked = std::fs::read(dir.join("environ"))
                .unwrap_or_default()
                .split(|&b| b == 0)
                .any(|var| var == self.marker.as_bytes());
            let in_cgroup = self.cgroup.as_ref().is_some_and(|(_, relative)| {
                std::fs::read_to_string(dir.join("cgroup"))
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| l.strip_prefix("0::"))
                    .any(|c| c == relative || c.starts_with(&format!("{relative}/")))
            });
            let command = std::fs::read(dir.join("cmdline"))
                .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
                .unwrap_or_default();
            processes.push(Process {
                pid,
                ppid,
                zombie,
                command: command.trim_end().to_string(),
                net: std::fs::metadata(dir.join("ns/net")).ok().map(|m| m.ino()),
                ours: marked || in_cgroup,
                programs: held_programs(&dir),
            });
        }
        processes
    }

    /// Kills whatever of the command is still running and removes the watch's cgroups.
    fn clean_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let ours: Vec<i32> = self
                .processes()
                .iter()
                .filter(|p| p.ours && !p.zombie)
                .map(|p| p.pid)
                .collect();
            if ours.is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in ours {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some((path, _)) = &self.cgroup {
            remove_cgroup_tree(path);
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.clean_up();
    }
}

/// A command started by a watch.
pub struct Run {
    child: Child,
    dir: TempDir,
}

impl Run {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Its standard output and error so far.
    pub fn output_so_far(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.0.join(name)).unwrap_or_default();
        read("stdout") + &read("stderr")
    }

    /// Waits up to `limit` for `text` in its output; false if it ended or time ran out.
    pub fn wait_for_output(&mut self, text: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.output_so_far().contains(text) {
                return true;
            }
            if self.child.try_wait().ok().flatten().is_some() {
                return self.output_so_far().contains(text);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Sends `signal` to the command (`group`: to its whole process group, as a
    /// terminal's Ctrl-C does).
    pub fn signal(&self, signal: i32, group: bool) {
        let pid = if group { -self.pid() } else { self.pid() };
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid, signal) };
    }

    /// Waits for the command to end; after `limit`, kills its process group and fails.
    pub fn wait(mut self, limit: Duration) -> Output {
        let deadline = Instant::now() + limit;
        let status: ExitStatus = loop {
            if let Some(status) = self.child.try_wait().expect("wait for the command") {
                break status;
            }
            if Instant::now() > deadline {
                self.signal(libc::SIGKILL, true);
                let _ = self.child.wait();
                panic!(
                    "still running after {limit:?}, killed:\n{}",
                    self.output_so_far()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let read = |name: &str| std::fs::read(self.dir.0.join(name)).unwrap_or_default();
        Output {
            status,
            stdout: read("stdout"),
            stderr: read("stderr"),
        }
    }
}

/// Whether the cgroup `path` is named for a process that is not the command's (see
/// `foreign`), as the tests' and keepalive's are: keepalive-run.<pid>,
/// ka-test-<name>-<pid>, ka-watch-<pid>-<n>.
fn named_for_other(path: &Path, foreign: impl Fn(i32) -> bool) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    name.split(['.', '-'])
        .filter_map(|part| part.parse::<i32>().ok())
        .any(foreign)
}

/// The BPF programs a process holds open: program descriptors and link descriptors
/// (whose fdinfo names the program too).
fn held_programs(dir: &Path) -> Vec<u32> {
    let Ok(fds) = std::fs::read_dir(dir.join("fd")) else {
        return Vec::new();
    };
    fds.flatten()
        .filter(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|target| {
                let target = target.to_string_lossy();
                target.starts_with("anon_inode:bpf-prog")
                    || target.starts_with("anon_inode:bpf_link")
            })
        })
        .filter_map(|fd| {
            let info = std::fs::read_to_string(dir.join("fdinfo").join(fd.file_name())).ok()?;
            info.lines()
                .find_map(|l| l.strip_prefix("prog_id:"))
                .and_then(|id| id.trim().parse().ok())
        })
        .collect()
}

/// The cgroup2 mount point, from /proc/self/mountinfo (not always /sys/fs/cgroup).
fn cgroup2_mount() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|l| {
        let (mount, fs) = l.split_once(" - ")?;
        fs.starts_with("cgroup2 ")
            .then(|| mount.split(' ').nth(4).map(PathBuf::from))?
    })
}

/// This process's cgroup2 path, relative to the mount ("/" or "/a/b").
fn own_cgroup() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

/// Every cgroup directory below `mount`, relative to it.
fn cgroups(mount: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let mut pending = vec![mount.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                let path = entry.path();
                found.insert(path.strip_prefix(mount).unwrap_or(&path).to_path_buf());
                pending.push(path);
            }
        }
    }
    found
}

/// Removes `path` and the cgroups below it, deepest first (their processes gone).
fn remove_cgroup_tree(path: &Path) {
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(path);
}

/// Watch cgroups of test processes that no longer run (an interrupted run's).
fn remove_stale_cgroups(mount: &Path) {
    let Some(own) = own_cgroup() else { return };
    let Ok(entries) = std::fs::read_dir(mount.join(own.trim_start_matches('/'))) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix(CGROUP_PREFIX)
            .and_then(|rest| rest.split('-').next());
        if pid.is_some_and(|pid| !Path::new("/proc").join(pid).exists()) {
            remove_cgroup_tree(&entry.path());
        }
    }
}

/// Named network namespaces, as `ip netns list` finds them in /run/netns, with the
/// inode of the namespace each names.
fn named_namespaces() -> BTreeMap<String, Option<u64>> {
    std::fs::read_dir("/run/netns")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let inode = std::fs::metadata(e.path()).ok().map(|m| m.ino());
                    (e.file_name().to_string_lossy().into_owned(), inode)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether BPF programs matter here: as root they can be listed; without root, where
/// the kernel forbids unprivileged BPF (kernel.unprivileged_bpf_disabled), a command
/// can load none, and there is nothing to list.
fn bpf_listable() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let unprivileged = std::fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled")
        .is_ok_and(|v| v.trim() == "0");
    root || unprivileged
}

/// The loaded BPF programs (`bpftool prog show`) with the cgroups below `mount` they
/// are attached to (`bpftool cgroup tree`), or None if bpftool cannot list them.
fn bpf_programs(mount: Option<&Path>) -> Option<BTreeMap<u32, Program>> {
    let bpftool = |args: &[&std::ffi::OsStr]| {
        Command::new("bpftool")
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let mut programs = parse_bpftool(&bpftool(&["prog".as_ref(), "show".as_ref()])?);
    if let Some(mount) = mount {
        let tree = bpftool(&["cgroup".as_ref(), "tree".as_ref(), mount.as_os_str()]);
        for (id, cgroup) in parse_cgroup_tree(&tree.unwrap_or_default()) {
            if let Some(program) = programs.get_mut(&id) {
                program.cgroups.push(cgroup);
            }
        }
    }
    Some(programs)
}

/// Parses `bpftool cgroup tree`: a cgroup's path on a line of its own, then a line per
/// program attached to it, `ID ATTACH-TYPE [FLAGS] NAME`, indented.
fn parse_cgroup_tree(text: &str) -> Vec<(u32, PathBuf)> {
    let mut attached = Vec::new();
    let mut current = None;
    for line in text.lines() {
        if line.starts_with('/') {
            current = Some(PathBuf::from(line.trim()));
        } else if let (Some(cgroup), Some(id)) = (
            &current,
            line.split_whitespace().next().and_then(|w| w.parse().ok()),
        ) {
            attached.push((id, cgroup.clone()));
        }
    }
    attached
}

/// Parses `bpftool prog show`: a line `ID: TYPE  name NAME  tag ...` per program,
/// then indented lines, one of which may be `pids COMM(PID), COMM(PID)`.
fn parse_bpftool(text: &str) -> BTreeMap<u32, Program> {
    let mut programs = BTreeMap::new();
    let mut current: Option<u32> = None;
    for line in text.lines() {
        if let Some((id, _)) = line
            .split_once(':')
            .filter(|_| !line.starts_with(char::is_whitespace))
        {
            current = id.parse().ok();
            if let Some(id) = current {
                programs.insert(
                    id,
                    Program {
                        summary: line.split_whitespace().collect::<Vec<_>>().join(" "),
                        holders: Vec::new(),
                        cgroups: Vec::new(),
                    },
                );
            }
        } else if let (Some(id), Some(pids)) = (current, line.trim().strip_prefix("pids ")) {
            let holders = pids
                .split(',')
                .filter_map(|p| p.rsplit_once('(')?.1.strip_suffix(')')?.parse::<i32>().ok());
            if let Some(program) = programs.get_mut(&id) {
                program.holders.extend(holders);
            }
        }
    }
    programs
}

#[test]
fn bpftool_output_is_parsed() {
    let text = "12: cgroup_sock_ops  name on_sockops  tag 0123456789abcdef  gpl\n\
                \tloaded_at 2026-12-01T10:00:00+0000  uid 0\n\
                \txlated 512B  jited 300B  memlock 4096B  map_ids 3,4\n\
                \tpids keepalive(1234), other (x)(99)\n\
                13: sched_cls  tag fedcba9876543210\n";
    let programs = parse_bpftool(text);
    assert_eq!(programs.len(), 2);
    assert_eq!(programs[&12].holders, [1234, 99]);
    assert!(
        programs[&12]
            .summary
            .starts_with("12: cgroup_sock_ops name on_sockops")
    );
    assert!(programs[&13].holders.is_empty());
}

#[test]
fn bpftool_cgroup_tree_is_parsed() {
    let text = "CgroupPath\n\
                ID       AttachType      AttachFlags     Name\n\
                /sys/fs/cgroup/unified/keepalive-run.28283\n    \
                161      cgroup_sock_ops override        on_sockops\n    \
                162      cgroup_setsockopt override        on_setsockopt\n";
    let cgroup = PathBuf::from("/sys/fs/cgroup/unified/keepalive-run.28283");
    assert_eq!(
        parse_cgroup_tree(text),
        [(161, cgroup.clone()), (162, cgroup)]
    );
}
