//! The cgroups of `keepalive --cgroup` runs: commands that make cgroups of their own
//! inside them (container runtimes, systemd-run, test harnesses), runs in separate PID
//! namespaces, runs whose keepalive was killed, and commands that daemonize (nginx's
//! `daemon on`): each leaves nothing behind, and a daemon keeps keepalive.

#[path = "support/cgroup.rs"]
mod cgroup;
#[path = "support/cli.rs"]
mod cli;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cgroup::{CONFIGURED, Client, TestCgroup, listener, options, run_cgroups, strings};
use cli::{TIMING_OPTIONS, keepalive_command, text};

/// Waits up to `seconds` for `done`.
fn wait_until(seconds: u64, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !done() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every cgroup below `dir`, at any depth.
fn cgroups_below(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                found.push(entry.path());
                stack.push(entry.path());
            }
        }
    }
    found
}

#[test]
fn cgroups_a_command_makes_inside_its_run_go_with_it() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let home = TestCgroup::new("sub-cgroups");
    // As a container runtime or systemd-run does: a cgroup below its own, and a
    // process moved into it, which ends before COMMAND does.
    let script = "cg=$(sed -n 's/^0:://p' /proc/self/cgroup); \
                  dir=$0$cg/payload; mkdir \"$dir\" && mkdir \"$dir/inner\" && \
                  sh -c 'echo $$ > \"$1/cgroup.procs\"; exec true' sh \"$dir/inner\"; \
                  test -d \"$dir/inner\"";
    let mut run = keepalive_command(&["--cgroup", "--", "sh", "-c", script]);
    run.arg(cgroup::mount());
    home.enter(&mut run);
    let output = run.output().expect("keepalive starts");
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stderr).is_empty(), "{}", text(&output.stderr));
    assert_eq!(cgroups_below(&home.0), Vec::<PathBuf>::new(), "left behind");
}

#[test]
fn runs_in_separate_pid_namespaces_do_not_collide() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let home = TestCgroup::new("pidns");
    // keepalive is PID 1 in each namespace: two runs from one cgroup at once.
    let runs: Vec<std::process::Child> = (0..2)
        .map(|_| {
            let mut command = Command::new("unshare");
            command
                .args(["--pid", "--fork", "--mount-proc", "--"])
                .arg(cli::keepalive())
                .args(["--cgroup", "--", "sleep", "0.5"]);
            home.enter(&mut command);
            command
                .stderr(Stdio::piped())
                .spawn()
                .expect("unshare starts")
        })
        .collect();
    for run in runs {
        let output = run.wait_with_output().expect("reaped");
        assert!(output.status.success(), "{}", text(&output.stderr));
    }
    assert_eq!(run_cgroups(&home.0), Vec::<PathBuf>::new(), "left behind");
}

#[test]
fn a_killed_runs_cgroup_is_removed_by_a_run_from_another_cgroup() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let first = TestCgroup::new("killed-here");
    let mut killed = keepalive_command(&["--cgroup", "--", "sleep", "0.3"]);
    first.enter(&mut killed);
    let mut killed = killed.spawn().expect("keepalive starts");
    wait_until(5, "the run's cgroup", || !run_cgroups(&first.0).is_empty());
    killed.kill().expect("SIGKILL keepalive");
    killed.wait().expect("reaped");
    let stale = run_cgroups(&first.0);
    // Once its command has ended, any later keepalive removes it.
    wait_until(5, "the command to end", || {
        std::fs::read_to_string(stale[0].join("cgroup.events"))
            .is_ok_and(|events| events.contains("populated 0"))
    });
    let elsewhere = TestCgroup::new("later-there");
    let mut later = keepalive_command(&["--cgroup", "--", "true"]);
    elsewhere.enter(&mut later);
    let output = later.output().expect("keepalive starts");
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(!stale[0].exists(), "{} is left", stale[0].display());
}

#[test]
fn a_daemonizing_command_keeps_keepalive_and_its_cgroup_goes_when_it_ends() {
    let Some(_alone) = cgroup::start_alone() else {
        return;
    };
    let ours = cgroup::NewPrograms::from_now();
    let home = TestCgroup::new("daemon");
    let (_listener, port) = listener("127.0.0.1");
    let report = support::TempDir::new("daemon");
    let out = report.0.join("out");
    let go = report.0.join("go");
    // As nginx with `daemon on`: the command starts a daemon and exits at once; the
    // daemon connects only after keepalive has ended, when the test says so (or gives
    // up after 10 s, so that a failed test leaves no loop behind).
    let daemon = format!(
        "(i=0; while [ ! -e {go} ] && [ $i -lt 500 ]; do sleep 0.02; i=$((i + 1)); done; \
         exec {client} --wait 127.0.0.1 {port} > {out}) > /dev/null 2>&1 & exit 7",
        go = go.display(),
        client = Client::StaticGlibc.path().display(),
        out = out.display()
    );
    let mut run = keepalive_command(
        &[
            &["--cgroup"][..],
            &TIMING_OPTIONS,
            &["--", "sh", "-c", &daemon],
        ]
        .concat(),
    );
    home.enter(&mut run);
    let mut run = run
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("keepalive starts");
    wait_until(10, "keepalive to end while the daemon waits", || {
        run.try_wait().expect("wait").is_some()
    });
    let output = run.wait_with_output().expect("keepalive's output");
    assert_eq!(output.status.code(), Some(7), "{}", text(&output.stderr));
    std::fs::write(&go, "").expect("the daemon's go");
    wait_until(5, "the daemon's connection", || {
        std::fs::read_to_string(&out).is_ok_and(|t| t.contains("connected "))
    });
    let line = std::fs::read_to_string(&out).expect("the daemon's report");
    assert_eq!(options(&line), strings(CONFIGURED), "{line}");
    let runs = run_cgroups(&home.0);
    assert_eq!(runs.len(), 1, "the daemon's cgroup: {runs:?}");

    // When the daemon ends, its cgroup goes, and the programs with it.
    let procs = std::fs::read_to_string(runs[0].join("cgroup.procs")).expect("procs");
    for pid in procs.lines() {
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(pid.parse().expect("a pid"), libc::SIGTERM) };
    }
    wait_until(5, "the daemon's cgroup to go", || !runs[0].exists());
    drop(home);
    ours.assert_freed("after the daemon's cgroup went");
}
