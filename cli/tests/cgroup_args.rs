//! CGROUP arguments of `keepalive cgroup attach|detach|status`: relative to the
//! cgroup2 mount or absolute under it, symlinks followed; `.`, `..` and the root
//! cgroup refused (the root unless --root), and paths outside the mount named in one
//! clear line.
//!
//! Everything that could reach the root cgroup runs in a sandbox: a process moved into
//! a test cgroup, then given its own cgroup and mount namespaces with cgroup2 and bpffs
//! mounted afresh, so that the root cgroup it sees is that test cgroup. Even a command
//! that wrongly attached to "the root" there attaches to the test cgroup only.

#[path = "support/cgroup.rs"]
mod cgroup;
#[path = "support/cli.rs"]
mod cli;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cgroup::{TestCgroup, mount};
use cli::{clean, keepalive, keepalive_command, text};
use support::{TempDir, require};

/// What `bpftool cgroup show PATH` lists of keepalive's programs there.
fn attached_at(path: &Path) -> Vec<String> {
    let output = Command::new("bpftool")
        .args(["cgroup", "show"])
        .arg(path)
        .output()
        .expect("bpftool (package bpftool) is installed");
    text(&output.stdout)
        .lines()
        .filter(|l| l.contains("on_sockops") || l.contains("on_setsockopt"))
        .map(str::to_string)
        .collect()
}

fn keepalive_cgroup(args: &[&str]) -> Output {
    let mut all = vec!["cgroup"];
    all.extend(args);
    keepalive_command(&all).output().expect("keepalive starts")
}

/// Asserts exit status 125 and a single line of standard error containing every
/// one of `words`; returns the line.
fn refused(output: &Output, what: &str, words: &[&str]) -> String {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(125), "{what}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{what}: not one line: {stderr}");
    for word in words {
        assert!(stderr.contains(word), "{what}: no {word:?} in {stderr}");
    }
    stderr
}

/// A directory removed when dropped (declare before the cgroup it is in, so that it
/// goes first).
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// The outcome of one command the sandbox ran: exit status, stdout, stderr.
struct Step {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `steps` in a shell inside the sandbox whose root cgroup is `root`. Each step
/// is `NAME COMMAND...`, run with `$M` the cgroup2 mount and `$K` the command under
/// test; they run in order in `cwd` (relative to `$M`). Returns each step's outcome.
fn in_sandbox(root: &TestCgroup, cwd: &str, steps: &[(&str, &str)]) -> Vec<(String, Step)> {
    let name = root.0.file_name().expect("a name").to_string_lossy();
    let out = TempDir::new(&format!("sandbox-{name}"));
    let mount = mount();
    let inode = std::fs::metadata(&root.0).expect("the test cgroup").ino();
    let mut script = String::from(
        r#"set -u
M="$1"; K="$2"; OUT="$3"; INODE="$4"
umount -l "$M" && mount -t cgroup2 cgroup2 "$M" || exit 90
# The root cgroup seen from here must be the test cgroup, or nothing runs.
[ "$(stat -c %i "$M")" = "$INODE" ] || exit 91
umount -l /sys/fs/bpf 2>/dev/null; mount -t bpf bpf /sys/fs/bpf || exit 92
step() { name=$1; shift; "$@" >"$OUT/$name.out" 2>"$OUT/$name.err"; echo $? >"$OUT/$name.rc"; }
"#,
    );
    script.push_str(&format!("cd \"$M/{cwd}\" || exit 93\n"));
    for (name, command) in steps {
        script.push_str(&format!("step {name} {command}\n"));
    }
    let mut command = clean("unshare");
    command
        .args(["--cgroup", "--mount", "sh", "-c", &script, "sandbox"])
        .arg(&mount)
        .arg(keepalive())
        .arg(&out.0)
        .arg(inode.to_string());
    root.enter(&mut command);
    let output = command.output().expect("unshare starts");
    assert!(
        output.status.success(),
        "the sandbox failed: {:?} {}",
        output.status,
        text(&output.stderr)
    );
    let read = |name: &str, ext: &str| {
        std::fs::read_to_string(out.0.join(format!("{name}.{ext}"))).unwrap_or_default()
    };
    steps
        .iter()
        .map(|(name, _)| {
            let step = Step {
                code: read(name, "rc").trim().parse().unwrap_or(-1),
                stdout: read(name, "out"),
                stderr: read(name, "err"),
            };
            (name.to_string(), step)
        })
        .collect()
}

fn step<'a>(steps: &'a [(String, Step)], name: &str) -> &'a Step {
    &steps.iter().find(|(n, _)| n == name).expect(name).1
}

fn can_sandbox() -> bool {
    require(
        Command::new("unshare").arg("--version").output().is_ok(),
        "unshare (package util-linux) is not installed",
    )
}

#[test]
fn dot_and_dot_dot_are_refused_and_nothing_is_attached() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    if !can_sandbox() {
        return;
    }
    let root = TestCgroup::new("args-dot");
    let child = Dir(root.0.join("child"));
    std::fs::create_dir(&child.0).expect("a child cgroup");
    // Typed inside a cgroup directory, `.` means that directory to a shell user.
    let steps = in_sandbox(
        &root,
        "child",
        &[
            ("attach_dot", "\"$K\" cgroup attach --idle 7 ."),
            ("attach_dot_slash", "\"$K\" cgroup attach --idle 7 ./"),
            ("attach_dot_dot", "\"$K\" cgroup attach --idle 7 .."),
            ("attach_up", "\"$K\" cgroup attach --idle 7 child/.."),
            ("detach_dot", "\"$K\" cgroup detach ."),
            ("status_dot", "\"$K\" cgroup status ."),
            ("attach_empty", "\"$K\" cgroup attach --idle 7 ''"),
            ("status", "\"$K\" cgroup status --json"),
            ("bpftool_root", "bpftool cgroup show \"$M\""),
            ("bpftool_child", "bpftool cgroup show \"$M/child\""),
        ],
    );
    let mut wrong = Vec::new();
    for name in [
        "attach_dot",
        "attach_dot_slash",
        "attach_dot_dot",
        "attach_up",
        "detach_dot",
        "status_dot",
    ] {
        let s = step(&steps, name);
        let one_line = s.stderr.lines().count() == 1;
        let says = s.stderr.contains("relative to the cgroup2 mount");
        if s.code != 125 || !one_line || !says {
            wrong.push(format!("{name}: exit {}: {}{}", s.code, s.stdout, s.stderr));
        }
    }
    let empty = step(&steps, "attach_empty");
    if ![2, 125].contains(&empty.code) {
        wrong.push(format!("attach '': exit {}: {}", empty.code, empty.stderr));
    }
    let status = step(&steps, "status");
    if status.code != 0 || status.stdout.trim() != "[]" {
        wrong.push(format!("status lists attachments: {}", status.stdout));
    }
    for name in ["bpftool_root", "bpftool_child"] {
        let s = step(&steps, name);
        if s.stdout.contains("on_sockops") || s.stdout.contains("on_setsockopt") {
            wrong.push(format!("{name}: attached: {}", s.stdout));
        }
    }
    // From outside: nothing on the test cgroup (the sandbox's root) or its child.
    for dir in [&root.0, &child.0] {
        let found = attached_at(dir);
        if !found.is_empty() {
            wrong.push(format!("{} has {found:?}", dir.display()));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_root_cgroup_needs_the_root_flag_for_attach_and_detach() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    if !can_sandbox() {
        return;
    }
    let root = TestCgroup::new("args-root");
    // The sandbox's root cgroup is the test cgroup: --root attaches there, never to the
    // machine's root cgroup.
    let steps = in_sandbox(
        &root,
        "",
        &[
            ("attach_slash", "\"$K\" cgroup attach --idle 7 /"),
            ("attach_mount", "\"$K\" cgroup attach --idle 7 \"$M\""),
            (
                "attach_mount_slash",
                "\"$K\" cgroup attach --idle 7 \"$M/\"",
            ),
            ("detach_slash", "\"$K\" cgroup detach /"),
            ("status_slash", "\"$K\" cgroup status /"),
            ("bpftool_refused", "bpftool cgroup show \"$M\""),
            ("attach_root", "\"$K\" cgroup attach --root --idle 7 /"),
            ("bpftool_attached", "bpftool cgroup show \"$M\""),
            ("status_attached", "\"$K\" cgroup status --json /"),
            ("detach_root", "\"$K\" cgroup detach --root \"$M\""),
            ("bpftool_detached", "bpftool cgroup show \"$M\""),
        ],
    );
    let mut wrong = Vec::new();
    for name in [
        "attach_slash",
        "attach_mount",
        "attach_mount_slash",
        "detach_slash",
    ] {
        let s = step(&steps, name);
        if s.code != 125 || s.stderr.lines().count() != 1 || !s.stderr.contains("--root") {
            wrong.push(format!("{name}: exit {}: {}{}", s.code, s.stdout, s.stderr));
        }
    }
    let has_programs = |name: &str| step(&steps, name).stdout.contains("on_sockops");
    let status = step(&steps, "status_slash");
    if status.code != 0 {
        wrong.push(format!("status /: exit {}: {}", status.code, status.stderr));
    }
    if has_programs("bpftool_refused") {
        wrong.push("attached after the refusals".into());
    }
    let attach = step(&steps, "attach_root");
    if attach.code != 0 || !has_programs("bpftool_attached") {
        wrong.push(format!(
            "attach --root: exit {}: {}{}",
            attach.code, attach.stdout, attach.stderr
        ));
    }
    let listed = step(&steps, "status_attached");
    if !listed.stdout.contains("\"idle\": 7") {
        wrong.push(format!("status / after attach --root: {}", listed.stdout));
    }
    let detach = step(&steps, "detach_root");
    if detach.code != 0 || has_programs("bpftool_detached") {
        wrong.push(format!(
            "detach --root: exit {}: {}",
            detach.code, detach.stderr
        ));
    }
    if !attached_at(&root.0).is_empty() {
        wrong.push("left attached to the test cgroup".into());
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn an_absolute_path_outside_the_cgroup2_mount_gets_one_clear_line() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let mount = mount();
    let elsewhere = TempDir::new("cgroup-args-outside");
    let mut outside = vec![elsewhere.0.clone()];
    // A cgroup v1 hierarchy, where the machine has one (this one has them beside the
    // cgroup2 mount, at /sys/fs/cgroup/cpu and others).
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    if let Some(v1) = mountinfo.lines().find_map(|l| {
        let (mount, fs) = l.split_once(" - ")?;
        fs.starts_with("cgroup ")
            .then(|| mount.split(' ').nth(4).map(PathBuf::from))?
    }) {
        outside.push(v1);
    }
    let expected_tail = format!(
        "is not in the cgroup2 hierarchy mounted at {}; give a path under it, or relative to it",
        mount.display()
    );
    for path in &outside {
        let shown = path.display().to_string();
        for action in [&["attach", "--idle", "7"][..], &["detach"], &["status"]] {
            let mut args = action.to_vec();
            args.push(&shown);
            let output = keepalive_cgroup(&args);
            let line = refused(&output, &format!("{args:?}"), &[&expected_tail]);
            assert_eq!(
                line.trim_end(),
                format!("keepalive: {shown} {expected_tail}"),
                "{args:?}"
            );
        }
    }
}

#[test]
fn a_symlink_to_a_cgroup_is_followed_and_must_end_under_the_mount() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let cgroup = TestCgroup::new("args-link");
    let links = TempDir::new("cgroup-args-links");
    let link = links.0.join("service");
    std::os::unix::fs::symlink(&cgroup.0, &link).expect("symlink");
    let link = link.display().to_string();
    let attach = keepalive_cgroup(&["attach", "--idle", "7", &link]);
    assert_eq!(
        attach.status.code(),
        Some(0),
        "attach {link}: {}",
        text(&attach.stderr)
    );
    assert!(
        text(&attach.stdout).contains(&format!("attached to {}:", cgroup.0.display())),
        "the real directory is named: {}",
        text(&attach.stdout)
    );
    assert_eq!(attached_at(&cgroup.0).len(), 2, "both programs attached");
    let status = keepalive_cgroup(&["status", "--json", &link]);
    assert!(
        text(&status.stdout).contains("\"idle\": 7"),
        "status {link}: {}{}",
        text(&status.stdout),
        text(&status.stderr)
    );
    let detach = keepalive_cgroup(&["detach", &link]);
    assert_eq!(detach.status.code(), Some(0), "{}", text(&detach.stderr));
    assert!(attached_at(&cgroup.0).is_empty(), "detached");

    // A link that leads out of the cgroup2 hierarchy is named with where it leads.
    let target = links.0.join("target");
    std::fs::create_dir(&target).expect("a directory");
    let away = links.0.join("away");
    std::os::unix::fs::symlink(&target, &away).expect("symlink");
    let output = keepalive_cgroup(&["attach", &away.display().to_string()]);
    refused(
        &output,
        "a link out of the mount",
        &[
            &away.display().to_string(),
            &target.display().to_string(),
            "is not in the cgroup2 hierarchy",
        ],
    );
}

#[test]
fn relative_paths_are_taken_from_the_cgroup2_mount_not_the_current_directory() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let cgroup = TestCgroup::new("args-relative");
    let relative = cgroup
        .0
        .strip_prefix(mount())
        .expect("under the mount")
        .display()
        .to_string();
    let elsewhere = TempDir::new("cgroup-args-cwd");
    let run = |args: &[&str]| {
        let mut all = vec!["cgroup"];
        all.extend(args);
        keepalive_command(&all)
            .current_dir(&elsewhere.0)
            .output()
            .expect("keepalive starts")
    };
    let attach = run(&["attach", "--idle", "7", &relative]);
    assert_eq!(attach.status.code(), Some(0), "{}", text(&attach.stderr));
    assert_eq!(attached_at(&cgroup.0).len(), 2, "both programs attached");
    let with_slash = format!("/{relative}");
    let status = run(&["status", "--json", &with_slash]);
    assert!(
        text(&status.stdout).contains("\"idle\": 7"),
        "status {with_slash}: {}{}",
        text(&status.stdout),
        text(&status.stderr)
    );
    let detach = run(&["detach", &relative]);
    assert_eq!(detach.status.code(), Some(0), "{}", text(&detach.stderr));
    assert!(attached_at(&cgroup.0).is_empty(), "detached");

    // A name that exists only in the current directory is looked for under the mount.
    std::fs::create_dir(elsewhere.0.join("here")).expect("a directory");
    let missing = run(&["attach", "here"]);
    refused(
        &missing,
        "a directory of the current directory",
        &[
            "here",
            &mount().join("here").display().to_string(),
            "No such file or directory",
        ],
    );
}

#[test]
fn under_ip_netns_exec_the_missing_cgroup2_is_explained() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    if !require(
        Command::new("ip").arg("-V").output().is_ok(),
        "ip (package iproute2) is not installed",
    ) {
        return;
    }
    let name = format!("ka-args-{}", std::process::id());
    struct Netns(String);
    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let added = Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .expect("ip runs");
    assert!(added.success(), "ip netns add {name}");
    let _netns = Netns(name.clone());
    for action in [&["status"][..], &["attach", "--idle", "7", "some.slice"]] {
        let mut command = clean("ip");
        command
            .args(["netns", "exec", &name])
            .arg(keepalive())
            .arg("cgroup")
            .args(action);
        let output = command.output().expect("ip netns exec runs");
        refused(
            &output,
            &format!("{action:?} under ip netns exec"),
            &[
                "no cgroup2",
                "ip netns exec",
                &format!("nsenter --net=/run/netns/{name}"),
            ],
        );
    }
}
