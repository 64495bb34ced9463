//! The scripts a user runs leave nothing behind: no process, network namespace, cgroup
//! or BPF program outlives them, whether they succeed or are interrupted (Ctrl-C,
//! timeout(1)'s SIGTERM, SIGKILL). tests/support/leftovers.rs says how it is checked.
//!
//! Which scripts: demo.sh (its servers run in network namespaces of their own) as root
//! and rootless, bench.sh (a connection server, sleeping processes, cgroup mode) in a
//! quick run, memcheck.sh and install.sh. package.sh, test.sh and fuzz.sh only run
//! programs in the foreground, which end before they do (cargo, cargo-deb, lintian;
//! test.sh ends in `exec cargo test`, fuzz.sh in `exec cargo fuzz`); tests/package.rs
//! runs package.sh under the same check.

#[path = "support/leftovers.rs"]
mod leftovers;
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use leftovers::Watch;
use support::{TempDir, library, probe, require, root};

/// Long enough for a script to build what it needs on a busy machine.
const LIMIT: Duration = Duration::from_secs(600);
/// The line the demo prints once a server and a client run, in each round.
const VANISHING: &str = "the server vanishes now";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether `program` runs (with `args`) and succeeds.
fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The unprivileged user the rootless demo runs as when the tests run as root.
const NOBODY: [&str; 4] = ["--reuid=65534", "--regid=65534", "--clear-groups", "--"];

/// A directory under /tmp that any user can read, removed when dropped: the rootless
/// demo cannot read a checkout or a target directory under /root.
struct Readable(PathBuf);

impl Readable {
    fn new(name: &str) -> Readable {
        let path = std::env::temp_dir().join(format!("ka-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(path.join("scripts")).expect("create a readable directory");
        for dir in [&path, &path.join("scripts")] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                .expect("chmod 755");
        }
        Readable(path)
    }
}

impl Drop for Readable {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How the demo runs: as the test's own user, or (as root) as nobody.
#[derive(Clone, Copy, PartialEq)]
enum As {
    Myself,
    Nobody,
}

/// scripts/demo.sh with the built library (so that it does not build it again) and a
/// short wait; `who` says as whom. The readable copy must live as long as the run.
fn demo(who: As) -> (Command, Option<Readable>) {
    let mut command;
    let mut copy = None;
    if who == As::Nobody {
        // A copy of the demo and of what it sources, and of the library, that nobody
        // can read; system directories only on the PATH (pyenv lives under /root).
        let dir = Readable::new("rootless-demo");
        for script in ["demo.sh", "needs.sh"] {
            std::fs::copy(
                root().join("scripts").join(script),
                dir.0.join("scripts").join(script),
            )
            .expect("copy the script");
        }
        let lib = dir.0.join("libkeepalive.so");
        std::fs::copy(library(), &lib).expect("copy the library");
        command = Command::new("setpriv");
        command
            .args(NOBODY)
            .arg(dir.0.join("scripts/demo.sh"))
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("KEEPALIVE_LIBRARY", &lib);
        copy = Some(dir);
    } else {
        command = Command::new(root().join("scripts/demo.sh"));
        command.env("KEEPALIVE_LIBRARY", library());
    }
    command.env("DEMO_WAIT", "2").env("DEMO_CLIENT", "python3");
    (command, copy)
}

/// As whom the demo can run here: root, or rootless (needs unprivileged user
/// namespaces, `unshare -rn`); None (after saying why) if neither works.
fn demo_user(rootless: bool) -> Option<As> {
    let who = match (is_root(), rootless) {
        (true, false) => Some(As::Myself),
        (true, true) => succeeds(
            "setpriv",
            &[NOBODY.as_slice(), &["unshare", "-rn", "true"]].concat(),
        )
        .then_some(As::Nobody),
        (false, true) => succeeds("unshare", &["-rn", "true"]).then_some(As::Myself),
        (false, false) => None,
    };
    let why = if rootless {
        "the rootless demo needs unprivileged user namespaces (unshare -rn as a user)"
    } else {
        "the demo as root needs root"
    };
    require(who.is_some(), why).then_some(who).flatten()
}

fn demo_leaves_nothing(rootless: bool) {
    let Some(who) = demo_user(rootless) else {
        return;
    };
    let Some(watch) = Watch::new() else { return };
    let (command, _copy) = demo(who);
    let output = watch.run(command, "demo", LIMIT);
    watch.assert_clean("scripts/demo.sh", &output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("the client gave up after"),
        "the demo failed: {:?}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_demo_as_root_leaves_nothing() {
    demo_leaves_nothing(false);
}

#[test]
fn the_demo_rootless_leaves_nothing() {
    demo_leaves_nothing(true);
}

/// The demo, stopped by `signal` while its server and client run (first round):
/// to the process group as a terminal's Ctrl-C does, or to the demo alone as
/// timeout(1) or kill(1) do.
fn interrupted_demo_leaves_nothing(signal: i32, group: bool) {
    let Some(who) = demo_user(!is_root()) else {
        return;
    };
    let Some(watch) = Watch::new() else { return };
    let (command, _copy) = demo(who);
    let mut run = watch.start(command, "demo-interrupted");
    let running = run.wait_for_output(VANISHING, LIMIT);
    assert!(
        running,
        "the demo did not get to its first round:\n{}",
        run.output_so_far()
    );
    run.signal(signal, group);
    let output = run.wait(Duration::from_secs(30));
    watch.assert_clean("scripts/demo.sh, interrupted", &output);
}

#[test]
fn the_demo_stopped_with_ctrl_c_leaves_nothing() {
    interrupted_demo_leaves_nothing(libc::SIGINT, true);
}

#[test]
fn the_demo_stopped_with_sigterm_leaves_nothing() {
    interrupted_demo_leaves_nothing(libc::SIGTERM, false);
}

#[test]
fn the_demo_killed_with_sigkill_leaves_nothing() {
    interrupted_demo_leaves_nothing(libc::SIGKILL, false);
}

/// scripts/bench.sh in a quick run (one round of tiny batches, about 10 s once built),
/// its report written to `results` instead of bench/.
fn bench(results: &Path, rounds: &str) -> Command {
    let mut command = Command::new(root().join("scripts/bench.sh"));
    command
        .env("BENCH_ROUNDS", rounds)
        .env("BENCH_SOCKET_BATCHES", "1")
        .env("BENCH_EXECS", "5")
        .env("BENCH_CONNECT_BATCHES", "1")
        .env("BENCH_RESULTS", results);
    command
}

/// What bench.sh runs, where the tests may not install it (as root it installs them).
fn bench_can_run() -> bool {
    let missing: Vec<&str> = ["valgrind", "strace", "gcc", "clang"]
        .into_iter()
        .filter(|tool| !succeeds(tool, &["--version"]))
        .collect();
    require(
        is_root() || missing.is_empty(),
        &format!("bench.sh needs {missing:?}, which only root may install"),
    )
}

#[test]
fn the_benchmark_leaves_nothing() {
    if !bench_can_run() {
        return;
    }
    let Some(watch) = Watch::new() else { return };
    let results = TempDir::new("bench-results");
    let output = watch.run(bench(&results.0, "1"), "bench", LIMIT);
    watch.assert_clean("scripts/bench.sh", &output);
    assert!(
        output.status.success() && results.0.join("RESULTS.md").is_file(),
        "bench.sh failed: {:?}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// bench.sh stopped in the middle of its rounds, while its connection server runs.
fn interrupted_bench_leaves_nothing(signal: i32) {
    if !bench_can_run() {
        return;
    }
    let Some(watch) = Watch::new() else { return };
    let results = TempDir::new("bench-results");
    let mut run = watch.start(bench(&results.0, "1000"), "bench-interrupted");
    let running = run.wait_for_output("round 2/", LIMIT);
    assert!(
        running,
        "bench.sh did not get to its rounds:\n{}",
        run.output_so_far()
    );
    run.signal(signal, false);
    let output = run.wait(Duration::from_secs(60));
    watch.assert_clean("scripts/bench.sh, interrupted", &output);
}

#[test]
fn the_benchmark_stopped_with_sigterm_leaves_nothing() {
    interrupted_bench_leaves_nothing(libc::SIGTERM);
}

#[test]
fn the_benchmark_killed_with_sigkill_leaves_nothing() {
    interrupted_bench_leaves_nothing(libc::SIGKILL);
}

#[test]
fn memcheck_leaves_nothing() {
    if !require(
        succeeds("valgrind", &["--version"]),
        "valgrind is not installed",
    ) {
        return;
    }
    let Some(watch) = Watch::new() else { return };
    let mut command = Command::new(root().join("scripts/memcheck.sh"));
    command
        .env("KEEPALIVE_LIBRARY", library())
        .env("KEEPALIVE_PROBE", probe());
    let output = watch.run(command, "memcheck", LIMIT);
    watch.assert_clean("scripts/memcheck.sh", &output);
    assert!(output.status.success(), "memcheck.sh failed: {output:?}");
}

#[test]
fn install_leaves_nothing() {
    let Some(watch) = Watch::new() else { return };
    let dest = TempDir::new("install-destdir");
    let mut command = Command::new(root().join("scripts/install.sh"));
    command.env("DESTDIR", &dest.0).env("PREFIX", "/usr");
    let output = watch.run(command, "install", LIMIT);
    watch.assert_clean("scripts/install.sh", &output);
    assert!(output.status.success(), "install.sh failed: {output:?}");
}

/// The check itself finds each kind of thing a script can leave: a command that
/// leaves a process detached in a session of its own, a named network namespace, and
/// (keepalive --cgroup killed with SIGKILL) a cgroup holding a process with BPF
/// programs attached to it.
#[test]
fn the_check_names_each_kind_of_leftover() {
    if !require(
        is_root(),
        "leaving a named network namespace, a cgroup and BPF programs needs root",
    ) {
        return;
    }
    let keepalive = support::keepalive_release();
    let Some(watch) = Watch::new() else { return };
    let netns = format!("ka-leftover-check-{}", std::process::id());
    let script = r#"
        set -e
        "$1" --cgroup -- sleep 300 &
        keepalive=$!
        # keepalive makes its cgroup below its own (this script's), keepalive-run.
        # and a random name: wait for sleep in it.
        base=$3$(sed -n 's/^0:://p' /proc/self/cgroup)
        until run=$(ls -d "$base"/keepalive-run.* 2>/dev/null) &&
            [[ -n $(cat "$run/cgroup.procs" 2>/dev/null) ]]; do sleep 0.05; done
        kill -KILL "$keepalive"
        ip netns add "$2"
        setsid sleep 301 </dev/null >/dev/null 2>&1 &
    "#;
    let mount = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find_map(|l| {
            let (mount, fs) = l.split_once(" - ")?;
            fs.starts_with("cgroup2 ")
                .then(|| mount.split(' ').nth(4).unwrap().to_string())
        })
        .expect("cgroup2 is mounted");
    let mut command = Command::new("bash");
    command
        .args(["-c", script, "leave"])
        .arg(&keepalive)
        .args([&netns, &mount]);
    let output = watch.run(command, "leave", Duration::from_secs(60));
    let left = watch.left_behind();
    let _ = Command::new("ip").args(["netns", "del", &netns]).status();
    drop(watch); // kills the processes, removes the cgroups (and so the programs)
    assert!(output.status.success(), "{output:?}");
    let report = left.join("\n");
    println!("what the check found:\n{report}");
    for expected in [
        "sleep 300",
        "sleep 301",
        "/keepalive-run.",
        "BPF program",
        "name on_sockops",
        &format!("named network namespace {netns}"),
    ] {
        assert!(report.contains(expected), "no {expected:?} in:\n{report}");
    }
}
