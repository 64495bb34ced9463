//! Shared by the cgroup-mode tests: the client and server programs the preload library
//! cannot reach (static glibc, static musl, io_uring, Go), built once per test binary,
//! and readings of what cgroup mode leaves in the kernel.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use crate::support::{self, compile_with};

/// A program made to be out of the preload library's reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// gcc -static: no dynamic loader, so LD_PRELOAD is never read.
    StaticGlibc,
    /// musl-gcc -static, as in Alpine and distroless images.
    StaticMusl,
    /// Creates and connects its socket with io_uring: no socket() call to interpose.
    IoUring,
    /// Go's net package, which makes its system calls itself.
    Go,
}

impl Client {
    pub const ALL: [Client; 4] = [
        Client::StaticGlibc,
        Client::StaticMusl,
        Client::IoUring,
        Client::Go,
    ];

    pub fn path(self) -> PathBuf {
        const SOURCE: &str = "tests/support/cgroup/client.c";
        match self {
            Client::StaticGlibc => compile_with("cc", SOURCE, "client-static", &["-static"]),
            Client::StaticMusl => compile_with("musl-gcc", SOURCE, "client-musl", &["-static"]),
            Client::IoUring => {
                compile_with("cc", SOURCE, "client-uring", &["-DUSE_IO_URING", "-luring"])
            }
            Client::Go => go_client(),
        }
    }
}

/// The static server: accepts and reports each accepted socket's options.
pub fn server() -> PathBuf {
    compile_with(
        "cc",
        "tests/support/cgroup/server.c",
        "server-static",
        &["-static"],
    )
}

/// The Go client, built once with the Go toolchain (CGO off: a static binary too).
fn go_client() -> PathBuf {
    static GO: OnceLock<PathBuf> = OnceLock::new();
    GO.get_or_init(|| {
        let output = support::target_dir().join("test-programs/client-go");
        let cache = support::target_dir().join("test-programs/go-cache");
        let result = Command::new("go")
            .args(["build", "-o"])
            .arg(&output)
            .arg(".")
            .current_dir(support::root().join("tests/support/cgroup/go"))
            .env("CGO_ENABLED", "0")
            .env("GOFLAGS", "-mod=mod")
            .env("GOCACHE", &cache)
            .env(
                "GOPATH",
                support::target_dir().join("test-programs/go-path"),
            )
            .output()
            .expect("the Go toolchain (package golang-go) is installed");
        assert!(
            result.status.success(),
            "building the Go client failed:\n{}",
            String::from_utf8_lossy(&result.stderr)
        );
        output
    })
    .clone()
}

/// The options a client or server line reports:
/// `connected keepalive=1 idle=60 intvl=10 cnt=3 user_timeout=4000`.
pub fn options(line: &str) -> [String; 5] {
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {key} in {line:?}"))
            .to_string()
    };
    ["keepalive", "idle", "intvl", "cnt", "user_timeout"].map(field)
}

/// Whether cgroup mode can run here: root (or CAP_BPF and CAP_NET_ADMIN).
fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    support::require(root, "cgroup mode loads BPF programs, which needs root")
}

/// Tests that count what is loaded in the whole kernel run alone; the others may run
/// beside one another.
static RUNNING: RwLock<()> = RwLock::new(());

/// Starts a test that loads programs: `None` (after saying why) where it cannot run.
pub fn start() -> Option<RwLockReadGuard<'static, ()>> {
    can_run().then(|| RUNNING.read().unwrap_or_else(|e| e.into_inner()))
}

/// Starts a test that counts the programs loaded, with no other test running.
pub fn start_alone() -> Option<RwLockWriteGuard<'static, ()>> {
    can_run().then(|| RUNNING.write().unwrap_or_else(|e| e.into_inner()))
}

/// The cgroup2 mount, from /proc/self/mountinfo.
pub fn mount() -> PathBuf {
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    text.lines()
        .find_map(|l| {
            let (mount, fs) = l.split_once(" - ")?;
            if !fs.starts_with("cgroup2 ") {
                return None;
            }
            mount.split(' ').nth(4).map(PathBuf::from)
        })
        .expect("cgroup2 is mounted")
}

/// This test process's own cgroup directory.
pub fn own_cgroup() -> PathBuf {
    let text = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
    let relative = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup2 line");
    mount().join(relative.trim_start_matches('/'))
}

/// The `keepalive-run.*` cgroups below `dir`.
pub fn run_cgroups(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("keepalive-run.")
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// How many of keepalive's BPF programs the kernel holds (by name, as bpftool lists
/// them), waiting up to 5 s for freed ones to go: the kernel frees them a moment after
/// the last reference goes.
pub fn loaded_programs_settle(expected: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let count = loaded_programs();
        if count == expected || Instant::now() > deadline {
            return count;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How many of keepalive's BPF programs the kernel holds now.
pub fn loaded_programs() -> usize {
    let output = Command::new("bpftool")
        .args(["prog", "show"])
        .output()
        .expect("bpftool (package bpftool) is installed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.contains("name on_sockops") || l.contains("name on_setsockopt"))
        .count()
}

/// The ids of keepalive's BPF programs that no process holds open: those a run left
/// attached to a cgroup it did not remove. Unlike [`loaded_programs`], it does not count
/// the programs of keepalive runs going on beside the test (other test binaries, other
/// users of the machine), which hold theirs open.
pub fn orphaned_programs() -> std::collections::BTreeSet<u64> {
    let output = Command::new("bpftool")
        .args(["prog", "show", "--json"])
        .output()
        .expect("bpftool (package bpftool) is installed");
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).expect("bpftool's JSON");
    let held = programs_held_open();
    list.as_array()
        .map(|programs| {
            programs
                .iter()
                .filter(|p| matches!(p["name"].as_str(), Some("on_sockops" | "on_setsockopt")))
                .filter_map(|p| p["id"].as_u64())
                .filter(|id| !held.contains(id))
                .collect()
        })
        .unwrap_or_default()
}

/// [`orphaned_programs`], waiting up to 5 s for it to be no more than `expected`: the
/// kernel frees a program a moment after its last reference goes.
pub fn orphaned_programs_settle(
    expected: &std::collections::BTreeSet<u64>,
) -> std::collections::BTreeSet<u64> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = orphaned_programs();
        if now.is_subset(expected) || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The ids of the BPF programs some process has a descriptor of (fdinfo's prog_id).
fn programs_held_open() -> std::collections::HashSet<u64> {
    let mut held = std::collections::HashSet::new();
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return held;
    };
    for process in processes.flatten() {
        let Ok(fds) = std::fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let is_program = std::fs::read_link(fd.path())
                .is_ok_and(|target| target.as_os_str() == "anon_inode:bpf-prog");
            if !is_program {
                continue;
            }
            let info = process.path().join("fdinfo").join(fd.file_name());
            let text = std::fs::read_to_string(info).unwrap_or_default();
            held.extend(
                text.lines()
                    .filter_map(|l| l.strip_prefix("prog_id:"))
                    .filter_map(|id| id.trim().parse::<u64>().ok()),
            );
        }
    }
    held
}

/// A cgroup a test makes below its own, removed (with any process moved out) when
/// dropped.
pub struct TestCgroup(pub PathBuf);

impl TestCgroup {
    pub fn new(name: &str) -> TestCgroup {
        let path = own_cgroup().join(format!("ka-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir(&path);
        std::fs::create_dir(&path).expect("create a test cgroup");
        TestCgroup(path)
    }

    /// `command`, started inside this cgroup.
    pub fn enter(&self, command: &mut Command) {
        use std::os::unix::process::CommandExt;
        let procs = std::ffi::CString::new(
            self.0
                .join("cgroup.procs")
                .into_os_string()
                .into_encoded_bytes(),
        )
        .expect("no NUL in the path");
        // SAFETY: the closure runs between fork and exec and calls only open, write and
        // close, which are async-signal-safe; `procs` is moved in and outlives it.
        unsafe {
            command.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                let moved = fd >= 0 && libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
                if fd >= 0 {
                    libc::close(fd);
                }
                if moved {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let home = own_cgroup();
        if let Ok(text) = std::fs::read_to_string(self.0.join("cgroup.procs")) {
            for pid in text.lines() {
                let _ = std::fs::write(home.join("cgroup.procs"), pid);
            }
        }
        let _ = Command::new(env!("CARGO_BIN_EXE_keepalive"))
            .args(["cgroup", "detach"])
            .arg(&self.0)
            .output();
        let _ = std::fs::remove_dir(&self.0);
    }
}
