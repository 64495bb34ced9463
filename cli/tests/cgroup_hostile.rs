//! Cgroup mode among other people's processes and BPF tools: an unprivileged user
//! trying to switch keepalive off, ten attaches at once, another tool's programs
//! before, after and in the way of keepalive's, an earlier version's attachment, a
//! container's cgroup namespace sharing the host's bpffs, a mount namespace without
//! bpffs, a pin directory an interrupted attach left half made. Each test reads what
//! the kernel holds (bpftool) and what a real client's connection gets.

#[path = "support/cgroup.rs"]
mod cgroup;
#[path = "support/cli.rs"]
mod cli;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cgroup::{
    CONFIGURED, SystemdUnit, TestCgroup, bpftool_attach, bpftool_attach_both, client_in,
    kernel_defaults, status_of, strings,
};
use cli::{TIMING_OPTIONS, keepalive_command, text};
use serde_json::Value;

/// enum bpf_attach_type of the two hooks.
const SOCK_OPS: u32 = 3;
const SETSOCKOPT: u32 = 22;

fn keepalive(args: &[&str]) -> Output {
    keepalive_command(args).output().expect("keepalive starts")
}

fn attach(dir: &Path, extra: &[&str]) -> Output {
    let dir = dir.display().to_string();
    keepalive(&[&["cgroup", "attach"], extra, &[&dir]].concat())
}

fn succeeded(output: &Output) {
    assert!(
        output.status.success(),
        "{:?}: {}{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// The programs attached to `dir` itself, as bpftool reports them: (id, hook, flags,
/// name).
fn attached(dir: &Path) -> Vec<(u64, String, String, String)> {
    let output = Command::new("bpftool")
        .args(["cgroup", "show"])
        .arg(dir)
        .arg("-j")
        .output()
        .expect("bpftool (package bpftool) is installed");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let list: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    list.as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    let field = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                    (
                        e["id"].as_u64().unwrap_or(0),
                        field("attach_type"),
                        field("attach_flags"),
                        field("name"),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The names of keepalive's programs attached to `dir`, sorted.
fn keepalive_programs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = attached(dir)
        .into_iter()
        .map(|(_, _, _, name)| name)
        .filter(|name| name.starts_with("on_"))
        .collect();
    names.sort();
    names
}

const BOTH: [&str; 2] = ["on_setsockopt", "on_sockops"];

/// Another tool's sock_ops program, loaded and pinned with bpftool, detached from
/// where it was attached and unpinned when dropped.
struct Foreign {
    pin: PathBuf,
    id: u64,
    attached_to: Vec<PathBuf>,
}

impl Foreign {
    fn load() -> Foreign {
        let object = support::compile_with(
            "clang",
            "tests/support/cgroup/foreign.bpf.c",
            "foreign.bpf.o",
            &[
                "-target",
                "bpf",
                "-g",
                "-c",
                "-I/usr/include/x86_64-linux-gnu",
            ],
        );
        let pin = PathBuf::from(format!(
            "/sys/fs/bpf/ka-test-foreign-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&pin);
        let loaded = Command::new("bpftool")
            .args(["prog", "load"])
            .arg(&object)
            .arg(&pin)
            .args(["type", "sockops"])
            .output()
            .expect("bpftool runs");
        assert!(loaded.status.success(), "{}", text(&loaded.stderr));
        let shown = Command::new("bpftool")
            .args(["prog", "show", "pinned"])
            .arg(&pin)
            .arg("-j")
            .output()
            .expect("bpftool runs");
        let info: Value = serde_json::from_slice(&shown.stdout).expect("bpftool's JSON");
        Foreign {
            pin,
            id: info["id"].as_u64().expect("an id"),
            attached_to: Vec::new(),
        }
    }

    /// `bpftool cgroup attach DIR sock_ops pinned PIN FLAG` (FLAG multi or override).
    fn attach(&mut self, dir: &Path, flag: &str) {
        bpftool_attach(dir, "sock_ops", &self.pin, flag);
        self.attached_to.push(dir.to_path_buf());
    }

    fn is_attached_to(&self, dir: &Path) -> bool {
        attached(dir).iter().any(|(id, ..)| *id == self.id)
    }
}

impl Drop for Foreign {
    fn drop(&mut self) {
        for dir in &self.attached_to {
            let _ = Command::new("bpftool")
                .args(["cgroup", "detach"])
                .arg(dir)
                .args(["sock_ops", "pinned"])
                .arg(&self.pin)
                .output();
        }
        let _ = std::fs::remove_file(&self.pin);
    }
}

/// What `detach` (tests/support/cgroup/detach.c) got as uid 65534 with no
/// capabilities, for each hook of `dir`.
fn unprivileged_detach(dir: &Path) -> Vec<String> {
    let program = support::c_program("cgroup/detach");
    [SOCK_OPS, SETSOCKOPT]
        .iter()
        .map(|hook| {
            let output = Command::new("setpriv")
                .args([
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                    "--inh-caps=-all",
                    "--",
                ])
                .arg(&program)
                .arg(dir)
                .arg(hook.to_string())
                .output()
                .expect("setpriv (util-linux) runs");
            text(&output.stdout).trim().to_string()
        })
        .collect()
}

#[test]
fn no_unprivileged_process_can_switch_keepalive_off() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let outer = TestCgroup::new("unpriv");
    succeeded(&attach(&outer.0, &TIMING_OPTIONS));
    let tried = unprivileged_detach(&outer.0);
    assert!(
        tried
            .iter()
            .all(|t| t.starts_with("errno=") && t != "errno=0"),
        "an unprivileged detach succeeded: {tried:?}"
    );
    assert_eq!(keepalive_programs(&outer.0), BOTH);
    assert_eq!(client_in(&outer, &[]), strings(CONFIGURED));
    assert_eq!(
        status_of(&outer.0).expect("listed")["attached"],
        true,
        "status"
    );

    // The same for a `keepalive --cgroup` run's cgroup, while it runs.
    let mut run = keepalive_command(&["--cgroup", "--idle", "9", "--", "sleep", "30"]);
    outer.enter(&mut run);
    let mut run = run.stdin(Stdio::null()).spawn().expect("keepalive starts");
    let run_cgroup = wait_for(|| cgroup::run_cgroups(&outer.0).into_iter().next());
    wait_for(|| (keepalive_programs(&run_cgroup) == BOTH).then_some(()));
    let tried = unprivileged_detach(&run_cgroup);
    assert!(
        tried.iter().all(|t| t != "errno=0"),
        "an unprivileged detach succeeded on the run's cgroup: {tried:?}"
    );
    assert_eq!(keepalive_programs(&run_cgroup), BOTH);
    // SIGTERM, which keepalive passes on, so that it removes its cgroup as it ends.
    // SAFETY: kill has no memory effects; the pid is our own child, not yet reaped.
    unsafe { libc::kill(run.id() as i32, libc::SIGTERM) };
    let _ = run.wait();
}

/// Waits up to 5 s for `found` to give something.
fn wait_for<T>(mut found: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(value) = found() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ten_attaches_at_once_end_with_one_attachment_with_the_last_settings() {
    let Some(_alone) = cgroup::start_alone() else {
        return;
    };
    let ours = cgroup::NewPrograms::from_now();
    let target = TestCgroup::new("concurrent");
    let dir = target.0.display().to_string();
    let mut children: Vec<(u16, std::process::Child)> = (0..10u16)
        .map(|i| {
            let idle = (20 + i).to_string();
            let child = keepalive_command(&["cgroup", "attach", "--idle", &idle, &dir])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("keepalive starts");
            (20 + i, child)
        })
        .collect();
    // The attach that finished last holds the settings: each takes the lock in turn,
    // and exits right after it lets go.
    let mut last = None;
    while !children.is_empty() {
        let mut i = 0;
        while i < children.len() {
            if let Some(status) = children[i].1.try_wait().expect("wait") {
                let (idle, child) = children.remove(i);
                let output = child.wait_with_output().expect("output");
                assert!(status.success(), "idle {idle}: {}", text(&output.stderr));
                last = Some(idle);
            } else {
                i += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(keepalive_programs(&target.0), BOTH, "one attachment");
    let status = status_of(&target.0).expect("status lists it");
    assert_eq!(status["attached"], true, "{status}");
    assert_eq!(status["idle"].as_u64(), last.map(u64::from), "{status}");
    assert_eq!(client_in(&target, &[])[1], last.unwrap().to_string());
    let pins: Vec<String> = std::fs::read_dir("/sys/fs/bpf/keepalive")
        .expect("keepalive's pin directory")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(&status["cgroup_id"].to_string()))
        .collect();
    assert_eq!(
        pins.len(),
        1,
        "one pin directory, no staging left: {pins:?}"
    );

    succeeded(&keepalive(&["cgroup", "detach", &dir]));
    assert!(keepalive_programs(&target.0).is_empty());
    drop(target);
    ours.assert_freed("after the last detach");
}

#[test]
fn status_says_what_the_kernel_has_attached() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let target = TestCgroup::new("status-kernel");
    succeeded(&attach(&target.0, &TIMING_OPTIONS));
    // A privileged process detaches keepalive's sock_ops program by its id.
    let (id, ..) = attached(&target.0)
        .into_iter()
        .find(|(_, _, _, name)| name == "on_sockops")
        .expect("attached");
    let detached = Command::new("bpftool")
        .args(["cgroup", "detach"])
        .arg(&target.0)
        .args(["sock_ops", "id", &id.to_string()])
        .output()
        .expect("bpftool runs");
    assert!(detached.status.success(), "{}", text(&detached.stderr));
    assert_eq!(status_of(&target.0).expect("listed")["attached"], false);
    let shown = keepalive(&["cgroup", "status", &target.0.display().to_string()]);
    assert!(
        text(&shown.stdout).contains("attached: NO"),
        "{}",
        text(&shown.stdout)
    );
    // Attaching again puts it back.
    succeeded(&attach(&target.0, &TIMING_OPTIONS));
    assert_eq!(status_of(&target.0).expect("listed")["attached"], true);
    assert_eq!(client_in(&target, &[]), strings(CONFIGURED));
}

#[test]
fn another_tools_programs_are_never_detached_or_replaced() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    // Attached before keepalive, with MULTI: both run, and detaching keepalive leaves it.
    let before = TestCgroup::new("foreign-before");
    let mut foreign = Foreign::load();
    foreign.attach(&before.0, "multi");
    succeeded(&attach(&before.0, &TIMING_OPTIONS));
    assert!(foreign.is_attached_to(&before.0));
    assert_eq!(client_in(&before, &[]), strings(CONFIGURED));
    succeeded(&keepalive(&[
        "cgroup",
        "detach",
        &before.0.display().to_string(),
    ]));
    assert!(foreign.is_attached_to(&before.0), "keepalive detached it");

    // Attached after keepalive: the same.
    let after = TestCgroup::new("foreign-after");
    succeeded(&attach(&after.0, &TIMING_OPTIONS));
    foreign.attach(&after.0, "multi");
    succeeded(&keepalive(&[
        "cgroup",
        "detach",
        &after.0.display().to_string(),
    ]));
    assert!(foreign.is_attached_to(&after.0), "keepalive detached it");
    assert!(keepalive_programs(&after.0).is_empty());

    // Attached alone (override): no room beside it, and keepalive says whose it is.
    let exclusive = TestCgroup::new("foreign-exclusive");
    foreign.attach(&exclusive.0, "override");
    let refused = attach(&exclusive.0, &TIMING_OPTIONS);
    assert_eq!(
        refused.status.code(),
        Some(125),
        "{}",
        text(&refused.stderr)
    );
    let message = text(&refused.stderr);
    assert!(
        message.contains(&format!("id {}", foreign.id)) && message.contains("foreign_sockops"),
        "{message}"
    );
    assert_eq!(message.trim().lines().count(), 1, "{message}");
    assert!(
        foreign.is_attached_to(&exclusive.0),
        "keepalive replaced it"
    );
    assert!(keepalive_programs(&exclusive.0).is_empty());
    assert!(status_of(&exclusive.0).is_none(), "pins left");
}

/// Builds the BPF program of keepalive 0.4.0 (tests/support/cgroup/keepalive-0.4.0.bpf.c,
/// which that version attached with BPF_F_ALLOW_OVERRIDE), pins it as that version did
/// under /sys/fs/bpf/keepalive/ID, and attaches it to `dir` the way it did.
fn attach_as_version_0_4_0(dir: &Path) -> Vec<u64> {
    let object = support::compile_with(
        "clang",
        "tests/support/cgroup/keepalive-0.4.0.bpf.c",
        "keepalive-0.4.0.bpf.o",
        &[
            "-target",
            "bpf",
            "-g",
            "-c",
            "-I/usr/include/x86_64-linux-gnu",
        ],
    );
    let id = std::fs::metadata(dir)
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .expect("cgroup");
    let pins = PathBuf::from(format!("/sys/fs/bpf/keepalive/{id}"));
    std::fs::create_dir_all(&pins).expect("pin directory");
    let loaded = Command::new("bpftool")
        .args(["prog", "loadall"])
        .arg(&object)
        .arg(&pins)
        .arg("pinmaps")
        .arg(&pins)
        .output()
        .expect("bpftool runs");
    assert!(loaded.status.success(), "{}", text(&loaded.stderr));
    // Version 0.4.0's pin names.
    for (from, to) in [("on_sockops", "sock_ops"), ("on_setsockopt", "setsockopt")] {
        std::fs::rename(pins.join(from), pins.join(to)).expect("rename a pin");
    }
    let _ = std::fs::remove_file(pins.join("sock_states"));
    bpftool_attach_both(dir, &pins, "override");
    attached(dir).into_iter().map(|(id, ..)| id).collect()
}

#[test]
fn an_earlier_versions_override_attachment_is_replaced_cleanly() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let target = TestCgroup::new("upgrade");
    let old_ids = attach_as_version_0_4_0(&target.0);
    assert!(
        attached(&target.0)
            .iter()
            .all(|(.., flags, _)| flags == "override")
    );
    succeeded(&attach(&target.0, &TIMING_OPTIONS));
    let now = attached(&target.0);
    assert_eq!(keepalive_programs(&target.0), BOTH);
    assert!(
        now.iter()
            .all(|(id, _, flags, _)| flags == "multi" && !old_ids.contains(id)),
        "{now:?}"
    );
    assert_eq!(client_in(&target, &[]), strings(CONFIGURED));
    let status = status_of(&target.0).expect("listed");
    assert_eq!(status["attached"], true, "{status}");
}

#[test]
fn pins_of_cgroups_outside_a_cgroup_namespace_are_not_pruned() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let outside = TestCgroup::new("ns-outside");
    succeeded(&attach(&outside.0, &TIMING_OPTIONS));
    let container = TestCgroup::new("ns-container");
    let inner = container.child("inner");
    // A container: its own cgroup namespace rooted at its cgroup, cgroup2 mounted
    // afresh (it sees only its subtree), and the host's bpffs shared.
    let mount = cgroup::mount();
    let script = format!(
        "umount -l {0} && mount -t cgroup2 cgroup2 {0} && exec {1} cgroup attach --idle 5 inner",
        mount.display(),
        cli::keepalive().display()
    );
    let mut command = Command::new("unshare");
    command.args(["--cgroup", "--mount", "--", "sh", "-c", &script]);
    container.enter(&mut command);
    let output = command.output().expect("unshare runs");
    succeeded(&output);
    let listed = status_of(&outside.0).expect("the outside attachment's pins were removed");
    assert_eq!(listed["attached"], true);
    assert_eq!(client_in(&outside, &[]), strings(CONFIGURED));
    assert_eq!(keepalive_programs(&inner.0), BOTH);
}

#[test]
fn attach_refuses_where_no_bpffs_is_mounted() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let target = TestCgroup::new("no-bpffs");
    let script = format!(
        "umount /sys/fs/bpf && exec {} cgroup attach --idle 5 {}",
        cli::keepalive().display(),
        target.0.display()
    );
    let output = Command::new("unshare")
        .args(["--mount", "--", "sh", "-c", &script])
        .output()
        .expect("unshare runs");
    assert_eq!(output.status.code(), Some(125), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("bpffs"),
        "{}",
        text(&output.stderr)
    );
    assert!(keepalive_programs(&target.0).is_empty(), "attached anyway");
    assert_eq!(client_in(&target, &[]), kernel_defaults());
}

#[test]
fn a_half_made_pin_directory_is_reported_and_removed_by_detach() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let whole = TestCgroup::new("whole");
    succeeded(&attach(&whole.0, &TIMING_OPTIONS));
    let half = TestCgroup::new("half");
    let id = std::fs::metadata(&half.0)
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .expect("cgroup");
    let pins = PathBuf::from(format!("/sys/fs/bpf/keepalive/{id}"));
    std::fs::create_dir(&pins).expect("a half-made pin directory");

    let listed = keepalive(&["cgroup", "status", "--json"]);
    succeeded(&listed);
    let list: Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    let entry = |dir: &Path| {
        list.as_array()
            .and_then(|l| {
                l.iter()
                    .find(|a| a["cgroup"].as_str() == Some(&dir.display().to_string()))
            })
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert!(entry(&half.0)["problem"].is_string(), "{list}");
    assert_eq!(entry(&whole.0)["attached"], true, "{list}");
    succeeded(&keepalive(&["cgroup", "status"]));

    succeeded(&keepalive(&[
        "cgroup",
        "detach",
        &half.0.display().to_string(),
    ]));
    assert!(!pins.exists(), "detach left {}", pins.display());
}

#[test]
fn keepalives_pin_directory_goes_with_the_last_detach() {
    let Some(_alone) = cgroup::start_alone() else {
        return;
    };
    let listed = keepalive(&["cgroup", "status", "--json"]);
    let list: Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    if list.as_array().is_some_and(|l| !l.is_empty()) {
        // Attachments of someone else's: the directory must stay for them.
        return;
    }
    let target = TestCgroup::new("last");
    succeeded(&attach(&target.0, &TIMING_OPTIONS));
    succeeded(&keepalive(&[
        "cgroup",
        "detach",
        &target.0.display().to_string(),
    ]));
    assert!(
        !Path::new("/sys/fs/bpf/keepalive").exists(),
        "/sys/fs/bpf/keepalive is left"
    );
    assert!(Path::new("/sys/fs/bpf").exists());
}

/// `keepalive ARGS` as uid 0 holding exactly `caps` (setpriv's names: bpf, perfmon...).
fn with_capabilities(caps: &str, args: &[&str]) -> Command {
    let caps = format!("-all,{caps}");
    let mut command = Command::new("setpriv");
    command
        .arg(format!("--inh-caps={caps}"))
        .arg(format!("--ambient-caps={caps}"))
        .arg(format!("--bounding-set={caps}"))
        .arg("--")
        .arg(cli::keepalive())
        .args(args);
    command
}

#[test]
fn cap_bpf_cap_perfmon_and_cap_net_admin_are_enough_and_less_is_refused_clearly() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    const ENOUGH: &str = "+bpf,+perfmon,+net_admin";
    let target = TestCgroup::new("least-privilege");
    let dir = target.0.display().to_string();
    let attach = [&["cgroup", "attach"][..], &TIMING_OPTIONS, &[&dir]].concat();
    succeeded(
        &with_capabilities(ENOUGH, &attach)
            .output()
            .expect("setpriv"),
    );
    assert_eq!(client_in(&target, &[]), strings(CONFIGURED));
    let status = with_capabilities(ENOUGH, &["cgroup", "status", "--json", &dir])
        .output()
        .expect("setpriv");
    succeeded(&status);
    assert!(text(&status.stdout).contains("\"attached\": true"));
    succeeded(
        &with_capabilities(ENOUGH, &["cgroup", "detach", &dir])
            .output()
            .expect("setpriv"),
    );
    assert!(keepalive_programs(&target.0).is_empty());

    // A --cgroup run, started inside the test cgroup, with the same three.
    let (_listener, port) = cgroup::listener("127.0.0.1");
    let client = cgroup::Client::StaticGlibc.path();
    let run_args = [
        &["--cgroup"][..],
        &TIMING_OPTIONS,
        &[
            "--",
            client.to_str().expect("a UTF-8 path"),
            "127.0.0.1",
            &port,
        ],
    ]
    .concat();
    let mut run = with_capabilities(ENOUGH, &run_args);
    target.enter(&mut run);
    let output = run.output().expect("setpriv");
    assert_eq!(cgroup::connected(&output), strings(CONFIGURED));

    // Without CAP_PERFMON: refused before anything is made, naming what is missing.
    let refused = with_capabilities("+bpf,+net_admin", &attach)
        .output()
        .expect("setpriv");
    assert_eq!(
        refused.status.code(),
        Some(125),
        "{}",
        text(&refused.stderr)
    );
    let message = text(&refused.stderr);
    assert!(message.contains("missing: CAP_PERFMON"), "{message}");
    assert!(keepalive_programs(&target.0).is_empty());
    assert!(status_of(&target.0).is_none());
}

#[test]
fn counters_say_what_the_connections_end_up_with() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    // Go (1.19 here) sets SO_KEEPALIVE, TCP_KEEPIDLE and TCP_KEEPINTVL after connect:
    // under `on` its values win for those three, and the counters must say so.
    let target = TestCgroup::new("counters");
    succeeded(&attach(&target.0, &TIMING_OPTIONS));
    let (_listener, port) = cgroup::listener("127.0.0.1");
    for _ in 0..4 {
        let mut go = Command::new(cgroup::Client::Go.path());
        go.args(["127.0.0.1", &port]);
        target.enter(&mut go);
        let line = cgroup::connected(&go.output().expect("the Go client starts"));
        assert_eq!(
            line,
            strings(["1", "15", "15", "4", "9000"]),
            "Go's own win"
        );
    }
    let status = status_of(&target.0).expect("listed");
    let counters = &status["counters"];
    assert_eq!(counters["connections"], 4, "{status}");
    assert_eq!(counters["options_set"], 4 * 5, "{status}");
    assert_eq!(counters["own_after_connect"], 4 * 3, "{status}");
    assert_eq!(counters["own_kept"], 0, "{status}");
    assert_eq!(counters["options_failed"], 0, "{status}");
    let shown = keepalive(&["cgroup", "status", &target.0.display().to_string()]);
    assert!(
        text(&shown.stdout).contains("Covered:"),
        "{}",
        text(&shown.stdout)
    );
}

#[test]
fn with_systemds_bpfprogram_at_either_level_the_innermost_settings_apply() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    // BPFProgram= on a slice, keepalive attached to a unit inside it.
    let slice = TestCgroup::new("slice");
    let unit = slice.child("inner");
    let _systemd = SystemdUnit::attach(&slice.0, &["--idle", "21"]);
    succeeded(&attach(&unit.0, &["--idle", "7"]));
    assert_eq!(client_in(&unit, &[])[1], "7", "the unit's own settings");
    assert_eq!(client_in(&slice, &[])[1], "21", "the slice's");

    // The reverse: keepalive on the slice, BPFProgram= on the unit inside it.
    let slice2 = TestCgroup::new("slice2");
    let unit2 = slice2.child("inner");
    succeeded(&attach(&slice2.0, &["--idle", "7"]));
    let _systemd2 = SystemdUnit::attach(&unit2.0, &["--idle", "21"]);
    assert_eq!(client_in(&unit2, &[])[1], "21", "the unit's own settings");
    assert_eq!(client_in(&slice2, &[])[1], "7", "the slice's");
}

#[test]
fn a_listeners_own_settings_made_before_the_attach_are_kept() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    use std::io::{BufRead, BufReader};
    // A server already running when keepalive is attached to its cgroup, whose
    // listener has keepalive on and a 600 s idle time of its own.
    let service = TestCgroup::new("running-server");
    let port = cgroup::listener("127.0.0.1").1; // a free port, released for the server
    let mut server = Command::new(cgroup::server());
    server
        .args(["--before", "keepalive=1,idle=600", "127.0.0.1", &port])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    service.enter(&mut server);
    let mut server = server.spawn().expect("the server starts");
    let mut lines = BufReader::new(server.stdout.take().expect("piped")).lines();
    assert_eq!(lines.next().expect("a line").expect("text"), "listening");
    succeeded(&attach(&service.0, &TIMING_OPTIONS));
    let _client =
        std::net::TcpStream::connect(("127.0.0.1", port.parse().unwrap())).expect("connect");
    let accepted = lines.next().expect("an accepted line").expect("text");
    drop(server.stdin.take());
    let _ = server.wait();
    // The listener's own win, as under the preload library; the rest is configured.
    assert_eq!(
        cgroup::options(&accepted),
        strings(["1", "600", "3", "4", "9000"]),
        "{accepted}"
    );
}

/// `keepalive cgroup attach --idle 100 DIR`, killed (strace injects SIGKILL) as it
/// moves its pins into place: both programs attached, pinned in staging only.
fn attach_killed_at_its_rename(dir: &str) {
    let killed = Command::new("strace")
        .args(["-f", "-o", "/dev/null", "-e", "inject=rename:signal=KILL"])
        .arg(cli::keepalive())
        .args(["cgroup", "attach", "--idle", "100", dir])
        .output()
        .expect("strace (package strace) runs");
    assert!(!killed.status.success(), "the attach was not killed");
}

#[test]
fn an_attach_killed_half_way_is_finished_by_the_next_attach_or_detach() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let target = TestCgroup::new("killed-attach");
    let dir = target.0.display().to_string();
    attach_killed_at_its_rename(&dir);
    assert_eq!(
        keepalive_programs(&target.0),
        BOTH,
        "attached before the kill"
    );
    let shown = keepalive(&["cgroup", "status", "--json"]);
    assert!(
        text(&shown.stdout).contains("interrupted attach"),
        "status does not show it: {}",
        text(&shown.stdout)
    );
    // The next attach removes what the killed one left: one pair, with its settings.
    succeeded(&attach(&target.0, &TIMING_OPTIONS));
    assert_eq!(keepalive_programs(&target.0), BOTH, "one pair");
    assert_eq!(client_in(&target, &[]), strings(CONFIGURED));
    succeeded(&keepalive(&["cgroup", "detach", &dir]));
    assert!(keepalive_programs(&target.0).is_empty());

    // Killed the same way, then detached: nothing left attached either.
    attach_killed_at_its_rename(&dir);
    let _ = keepalive(&["cgroup", "detach", &dir]);
    assert!(
        keepalive_programs(&target.0).is_empty(),
        "orphans left attached"
    );
}

#[test]
fn another_user_can_neither_own_keepalives_directory_nor_stall_it() {
    let Some(_alone) = cgroup::start_alone() else {
        return;
    };
    let root = Path::new("/sys/fs/bpf/keepalive");
    let listed = keepalive(&["cgroup", "status", "--json"]);
    let list: Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    if list.as_array().is_some_and(|l| !l.is_empty()) {
        // Attachments of someone else's: this test would have to remove their pins.
        assert!(
            support::require(false, "keepalive is attached elsewhere on this machine"),
            "unreachable"
        );
        return;
    }
    let _ = std::fs::remove_dir(root);
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .args(args)
            .output()
            .expect("setpriv runs")
    };
    // A bpffs mounted with its default mode (1777) lets anyone make the directory first.
    let mode = std::fs::metadata("/sys/fs/bpf")
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()));
    let target = TestCgroup::new("foreign-root");
    if mode.is_ok_and(|m| m & 0o002 != 0) {
        assert!(
            as_nobody(&["mkdir", "/sys/fs/bpf/keepalive"])
                .status
                .success()
        );
        // status does not read it, and says so; attach moves it aside and goes on.
        let shown = keepalive(&["cgroup", "status"]);
        assert_eq!(shown.status.code(), Some(125), "{}", text(&shown.stderr));
        assert!(
            text(&shown.stderr).contains("uid 65534"),
            "{}",
            text(&shown.stderr)
        );
        succeeded(&attach(&target.0, &TIMING_OPTIONS));
        let owner = std::fs::metadata(root).map(|m| std::os::unix::fs::MetadataExt::uid(&m));
        assert_eq!(owner.ok(), Some(0));
        let aside: Vec<PathBuf> = std::fs::read_dir("/sys/fs/bpf")
            .expect("bpffs")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().contains("keepalive-untrusted-"))
            .collect();
        assert!(!aside.is_empty(), "nothing moved aside");
        for dir in aside {
            let _ = std::fs::remove_dir(dir); // empty: only nobody's mkdir made them
        }
        succeeded(&keepalive(&[
            "cgroup",
            "detach",
            &target.0.display().to_string(),
        ]));
    }
    // A directory of root's that others may open (0.4.0 made it 0755) is closed.
    std::fs::create_dir(root).expect("make the directory");
    std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // Made by keepalive, it is closed to everyone else: no lock to hold it up with.
    succeeded(&attach(&target.0, &TIMING_OPTIONS));
    let mode = std::fs::metadata(root)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
    assert_eq!(mode.ok(), Some(0o700));
    let stall = as_nobody(&["flock", "-n", "-x", "/sys/fs/bpf/keepalive", "true"]);
    assert!(
        !stall.status.success(),
        "another user took keepalive's lock"
    );
    // Another user's status is told it needs root, not to remove anything.
    let shown = as_nobody(&[
        cli::keepalive().to_str().expect("UTF-8"),
        "cgroup",
        "status",
    ]);
    assert_eq!(shown.status.code(), Some(125));
    let message = text(&shown.stderr);
    assert!(
        message.contains("as root") && !message.contains("rm "),
        "{message}"
    );
    let mut holder = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(["flock", "-x", "/sys/fs/bpf", "sleep", "5"])
        .spawn()
        .expect("setpriv runs");
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    succeeded(&keepalive(&["cgroup", "status"]));
    succeeded(&keepalive(&[
        "cgroup",
        "detach",
        &target.0.display().to_string(),
    ]));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "held up by another user's lock"
    );
    let _ = holder.kill();
    let _ = holder.wait();
}

#[test]
fn a_runs_cgroup_is_closed_to_other_users_and_survives_a_cleanup_in_its_first_moment() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let home = TestCgroup::new("run-race");
    // Run A is held just before it locks its new cgroup; run B starts meanwhile and
    // cleans up what looks abandoned. A must still run, in a cgroup of its own.
    let mut first = Command::new("strace");
    first
        .args([
            "-f",
            "-o",
            "/dev/null",
            "-e",
            "inject=flock:delay_enter=1500000:when=1",
        ])
        .arg(cli::keepalive())
        .args(["--cgroup", "--", "sh", "-c", "cat /proc/self/cgroup"])
        .stdout(Stdio::piped());
    home.enter(&mut first);
    let first = first.spawn().expect("strace runs");
    std::thread::sleep(Duration::from_millis(500));
    let runs = cgroup::run_cgroups(&home.0);
    assert_eq!(runs.len(), 1, "{runs:?}");
    let mode = std::fs::metadata(&runs[0])
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .expect("the run's cgroup");
    assert_eq!(mode, 0o711, "the run's cgroup can be opened by other users");
    let mut second = keepalive_command(&["--cgroup", "--", "true"]);
    home.enter(&mut second);
    succeeded(&second.output().expect("keepalive starts"));
    let first = first.wait_with_output().expect("reaped");
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(
        text(&first.stdout).contains("/keepalive-run."),
        "{}",
        text(&first.stdout)
    );
    assert_eq!(cgroup::run_cgroups(&home.0), Vec::<PathBuf>::new());
}

#[test]
fn an_interrupted_replacement_of_an_earlier_versions_attachment_is_completed() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let target = TestCgroup::new("upgrade-killed");
    attach_as_version_0_4_0(&target.0);
    // The attach detaches 0.4.0's programs, attaches its own, and is killed before its
    // pins are in place; any later attach or detach must leave the cgroup covered.
    attach_killed_at_its_rename(&target.0.display().to_string());
    let elsewhere = TestCgroup::new("upgrade-elsewhere");
    succeeded(&attach(&elsewhere.0, &TIMING_OPTIONS));
    assert_eq!(keepalive_programs(&target.0), BOTH);
    assert_eq!(
        client_in(&target, &[])[1],
        "100",
        "the killed attach's settings"
    );
    let status = status_of(&target.0).expect("listed");
    assert_eq!(status["attached"], true, "{status}");
}

#[test]
fn pin_writes_absolute_paths_for_systemd() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let name = format!("ka-test-relative-{}", std::process::id());
    let output = keepalive_command(&["cgroup", "pin", "--idle", "5", &name])
        .current_dir("/sys/fs/bpf")
        .output()
        .expect("keepalive starts");
    let _ = std::fs::remove_dir_all(Path::new("/sys/fs/bpf").join(&name));
    succeeded(&output);
    let line = format!("BPFProgram=sock_ops:/sys/fs/bpf/{name}/sock_ops");
    assert!(
        text(&output.stdout).contains(&line),
        "{}",
        text(&output.stdout)
    );
}

#[test]
fn without_cap_sys_admin_unnamed_programs_at_the_cgroup_are_warned_about() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let target = TestCgroup::new("unnamed");
    let mut foreign = Foreign::load();
    foreign.attach(&target.0, "multi");
    let dir = target.0.display().to_string();
    let attach = [&["cgroup", "attach"][..], &TIMING_OPTIONS, &[&dir]].concat();
    let output = with_capabilities("+bpf,+perfmon,+net_admin", &attach)
        .output()
        .expect("setpriv");
    succeeded(&output);
    let warning = text(&output.stderr);
    assert!(warning.contains(&format!("id {}", foreign.id)), "{warning}");
    assert!(warning.contains("CAP_SYS_ADMIN"), "{warning}");
}
