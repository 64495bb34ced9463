//! Shared by the cgroup-mode tests: the client and server programs the preload library
//! cannot reach (static glibc, static musl, io_uring, Go) and the same client linked
//! dynamically, which both modes reach, built once per test binary,
//! and readings of what cgroup mode leaves in the kernel.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use crate::cli::{keepalive_command, text};
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
    /// The C client linked dynamically (plain `cc`): the same program runs under preload
    /// mode too, so that both modes can be compared on it. Not in [`Client::ALL`].
    Dynamic,
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
            Client::Dynamic => compile_with("cc", SOURCE, "client-dynamic", &[]),
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

/// Whether cgroup mode can run here: root (or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN),
/// with a bpffs at /sys/fs/bpf, mounted now if the machine has none, as systemd does
/// at boot (keepalive itself mounts one only in the host's init mount namespace,
/// which it cannot tell here: PID 1's namespaces are hidden from this sandbox).
fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !support::require(root, "cgroup mode loads BPF programs, which needs root") {
        return false;
    }
    static BPFFS: OnceLock<()> = OnceLock::new();
    BPFFS.get_or_init(|| {
        let mounted = Command::new("mountpoint")
            .args(["-q", "/sys/fs/bpf"])
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            let status = Command::new("mount")
                .args(["-t", "bpf", "bpf", "/sys/fs/bpf"])
                .status()
                .expect("mount runs");
            assert!(status.success(), "cannot mount bpffs at /sys/fs/bpf");
        }
    });
    true
}

/// Tests that check what is loaded in the whole kernel run alone; the others may run
/// beside one another.
static RUNNING: RwLock<()> = RwLock::new(());

/// Starts a test that loads programs: `None` (after saying why) where it cannot run.
pub fn start() -> Option<RwLockReadGuard<'static, ()>> {
    can_run().then(|| RUNNING.read().unwrap_or_else(|e| e.into_inner()))
}

/// Starts a test that checks the programs loaded, with no other test running.
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

/// keepalive's BPF programs loaded after a point in a test, for a test that checks that
/// the programs it loaded are freed. Such a test starts with [`start_alone`], so that no
/// other test of its binary loads programs meanwhile.
///
/// Programs are told apart by id, which the kernel never gives again while one is in use:
/// a program outlives its last detach until its cgroup is freed, and a removed cgroup
/// waits for the sockets made in it, so the programs of the tests before may stay for
/// seconds. Counting all programs would take them for this test's.
pub struct NewPrograms {
    known: BTreeSet<u64>,
}

impl NewPrograms {
    /// From now on: every program the kernel holds now is not new.
    pub fn from_now() -> Self {
        NewPrograms {
            known: keepalive_program_ids(),
        }
    }

    /// Fails the test if new programs are still loaded after up to 10 s: the kernel
    /// frees a program a moment after its cgroup, and the loopback connections tests
    /// make in their cgroups are gone in milliseconds; 10 s leaves room for a loaded CI
    /// machine.
    pub fn assert_freed(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let left = loop {
            let new: BTreeSet<u64> = keepalive_program_ids()
                .difference(&self.known)
                .copied()
                .collect();
            if new.is_empty() || Instant::now() > deadline {
                break new;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(left.is_empty(), "programs left loaded: {left:?}; {what}");
    }
}

/// The ids of keepalive's BPF programs the kernel holds now (by name, as bpftool lists
/// them).
fn keepalive_program_ids() -> BTreeSet<u64> {
    let output = Command::new("bpftool")
        .args(["prog", "show", "--json"])
        .output()
        .expect("bpftool (package bpftool) is installed");
    assert!(
        output.status.success(),
        "bpftool prog show: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).expect("bpftool's JSON");
    list.as_array()
        .expect("bpftool lists programs")
        .iter()
        .filter(|p| {
            matches!(
                p["name"].as_str(),
                Some("on_sockops" | "on_setsockopt" | "on_error")
            )
        })
        .filter_map(|p| p["id"].as_u64())
        .collect()
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

    /// A cgroup `name` inside this one. Made after this one, it is dropped (detached and
    /// removed) first, so that this one can go too.
    pub fn child(&self, name: &str) -> TestCgroup {
        let path = self.0.join(name);
        std::fs::create_dir(&path).expect("create a cgroup inside");
        TestCgroup(path)
    }

    /// `command`, started inside this cgroup.
    pub fn enter(&self, command: &mut Command) {
        support::enter_cgroup(command, &self.0);
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

/// `bpftool cgroup attach DIR HOOK pinned PIN FLAG`, as systemd's BPFProgram= (multi)
/// or an older tool (override) attaches.
pub fn bpftool_attach(dir: &Path, hook: &str, pin: &Path, flag: &str) {
    let output = Command::new("bpftool")
        .args(["cgroup", "attach"])
        .arg(dir)
        .args([hook, "pinned"])
        .arg(pin)
        .arg(flag)
        .output()
        .expect("bpftool runs");
    assert!(output.status.success(), "{}", text(&output.stderr));
}

/// Both of keepalive's programs pinned in `pins` (sock_ops, setsockopt), attached.
pub fn bpftool_attach_both(dir: &Path, pins: &Path, flag: &str) {
    for hook in ["sock_ops", "setsockopt"] {
        bpftool_attach(dir, hook, &pins.join(hook), flag);
    }
}

/// `keepalive cgroup pin PIN_OPTIONS` programs attached to `dir` as systemd's
/// BPFProgram= does (bpftool, BPF_F_ALLOW_MULTI); detached and unpinned when dropped.
pub struct SystemdUnit {
    dir: PathBuf,
    pins: PathBuf,
    /// What `keepalive cgroup pin` printed.
    pub printed: String,
}

impl SystemdUnit {
    pub fn attach(dir: &Path, pin_options: &[&str]) -> SystemdUnit {
        static UNITS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let unit = UNITS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pins = PathBuf::from(format!(
            "/sys/fs/bpf/ka-test-unit-{}-{unit}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&pins);
        let path = pins.display().to_string();
        let mut args = vec!["cgroup", "pin"];
        args.extend(pin_options);
        args.push(&path);
        let pinned = keepalive_command(&args).output().expect("keepalive starts");
        assert!(pinned.status.success(), "{}", text(&pinned.stderr));
        bpftool_attach_both(dir, &pins, "multi");
        SystemdUnit {
            dir: dir.to_path_buf(),
            pins,
            printed: text(&pinned.stdout),
        }
    }
}

impl Drop for SystemdUnit {
    fn drop(&mut self) {
        for hook in ["sock_ops", "setsockopt"] {
            let _ = Command::new("bpftool")
                .args(["cgroup", "detach"])
                .arg(&self.dir)
                .args([hook, "pinned"])
                .arg(self.pins.join(hook))
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.pins);
    }
}

/// What TIMING_OPTIONS give a connection: keepalive, idle, intvl, cnt, user timeout.
pub const CONFIGURED: [&str; 5] = ["1", "7", "3", "4", "9000"];

pub fn strings(values: [&str; 5]) -> [String; 5] {
    values.map(String::from)
}

/// The kernel's values for a socket nobody configured, in this namespace.
pub fn kernel_defaults() -> [String; 5] {
    let [idle, intvl, cnt] = support::kernel_defaults();
    [0, idle, intvl, cnt, 0].map(|v| v.to_string())
}

/// A loopback listener the clients connect to; the kernel completes the handshakes in
/// its backlog, so nothing needs to accept.
pub fn listener(host: &str) -> (TcpListener, String) {
    let listener = TcpListener::bind((host, 0)).expect("bind a loopback listener");
    let port = listener
        .local_addr()
        .expect("an address")
        .port()
        .to_string();
    (listener, port)
}

/// The options the client reported on its `connected` line.
pub fn connected(output: &Output) -> [String; 5] {
    let stdout = text(&output.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("connected "))
        .unwrap_or_else(|| panic!("no connected line: {stdout}\n{}", text(&output.stderr)));
    assert!(
        output.status.success(),
        "{:?}: {}",
        output.status,
        text(&output.stderr)
    );
    options(line)
}

/// `keepalive cgroup status --json`, the entry for `dir` if any.
pub fn status_of(dir: &std::path::Path) -> Option<serde_json::Value> {
    let output = keepalive_command(&["cgroup", "status", "--json"])
        .output()
        .expect("starts");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    list.as_array()?
        .iter()
        .find(|a| a["cgroup"].as_str() == Some(&dir.display().to_string()))
        .cloned()
}

/// The static client run inside `cgroup`, with keepalive options `wrapper` if any.
pub fn client_in(cgroup: &TestCgroup, wrapper: &[&str]) -> [String; 5] {
    let (_listener, port) = listener("127.0.0.1");
    let client = Client::StaticGlibc.path();
    let mut command = if wrapper.is_empty() {
        Command::new(&client)
    } else {
        let mut command = keepalive_command(wrapper);
        command.arg("--").arg(&client);
        command
    };
    command.args(["127.0.0.1", &port]);
    cgroup.enter(&mut command);
    connected(&command.output().expect("the client starts"))
}
