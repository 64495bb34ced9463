//! Cgroup mode on loopback: `keepalive --cgroup` and `keepalive cgroup ...` with real
//! programs the preload library cannot reach (static glibc and musl, io_uring, Go),
//! each reading back with getsockopt what the kernel holds for its own connection.
//! Also: modes, the program's own settings before and after connect, accepted
//! connections, nesting, exit statuses and signals, and that nothing is left behind.

#[path = "support/cgroup.rs"]
mod cgroup;
#[path = "support/cli.rs"]
mod cli;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cgroup::{
    CONFIGURED, Client, TestCgroup, client_in, connected, kernel_defaults, listener, options,
    own_cgroup, run_cgroups, status_of, strings,
};
use cli::{TIMING_OPTIONS, keepalive_command, text};

/// Runs `keepalive OPTIONS -- CLIENT [CLIENT_ARGS] HOST PORT` and returns its output.
fn keepalive_client(options: &[&str], client: Client, client_args: &[&str], host: &str) -> Output {
    let (_listener, port) = listener(if host.contains(':') {
        "::"
    } else {
        "127.0.0.1"
    });
    let mut command = keepalive_command(options);
    command
        .arg("--")
        .arg(client.path())
        .args(client_args)
        .args([host, &port]);
    command.output().expect("keepalive starts")
}

/// `--cgroup`, TIMING_OPTIONS, then `extra`.
fn cgroup_options<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    [&["--cgroup"], &TIMING_OPTIONS[..], extra].concat()
}

#[test]
fn programs_out_of_the_librarys_reach_get_the_options() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    for client in Client::ALL {
        for host in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            let output = keepalive_client(&cgroup_options(&[]), client, &[], host);
            let got = connected(&output);
            // Go sets SO_KEEPALIVE and 15 s idle and interval itself after connect, and
            // under `on` a program's own settings win; the rest is ours.
            let expected = match client {
                Client::Go => strings(["1", "15", "15", "4", "9000"]),
                _ => strings(CONFIGURED),
            };
            assert_eq!(got, expected, "{client:?} to {host}");
        }
    }
}

#[test]
fn without_cgroup_mode_these_programs_keep_the_kernels_defaults() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    for client in [Client::StaticGlibc, Client::StaticMusl, Client::IoUring] {
        // Preload mode runs them, warns when it can tell, and changes nothing.
        let output = keepalive_client(&TIMING_OPTIONS, client, &[], "127.0.0.1");
        assert_eq!(
            connected(&output),
            kernel_defaults(),
            "{client:?} under preload mode"
        );
    }
    let output = keepalive_client(&TIMING_OPTIONS, Client::StaticMusl, &[], "127.0.0.1");
    assert!(
        text(&output.stderr).contains("statically linked")
            && text(&output.stderr).contains("keepalive --cgroup"),
        "no warning for a static program: {}",
        text(&output.stderr)
    );
    let output = keepalive_client(&TIMING_OPTIONS, Client::Go, &[], "127.0.0.1");
    assert!(
        text(&output.stderr).contains("Go program"),
        "no warning for Go: {}",
        text(&output.stderr)
    );
}

#[test]
fn force_overrides_gos_own_timings_and_auto_follows_them_under_on() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let force = keepalive_client(
        &cgroup_options(&["--mode", "force"]),
        Client::Go,
        &[],
        "127.0.0.1",
    );
    assert_eq!(
        connected(&force),
        strings(CONFIGURED),
        "force against Go's own 15 s"
    );
    // auto = idle + interval × count of the socket: Go's 15 + 15 × our 4.
    let auto = keepalive_client(
        &[
            &["--cgroup"],
            &TIMING_OPTIONS[..6],
            &["--user-timeout", "auto"],
        ]
        .concat(),
        Client::Go,
        &[],
        "127.0.0.1",
    );
    assert_eq!(connected(&auto), strings(["1", "15", "15", "4", "75000"]));
}

#[test]
fn a_programs_own_settings_win_under_on_and_skip_and_lose_under_force() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let own = "keepalive=0,idle=20,user_timeout=5000";
    for client in [Client::StaticGlibc, Client::IoUring] {
        for when in ["--before", "--after"] {
            let on = keepalive_client(&cgroup_options(&[]), client, &[when, own], "127.0.0.1");
            assert_eq!(
                connected(&on),
                strings(["0", "20", "3", "4", "5000"]),
                "on, {client:?} {when}"
            );
            let skip = keepalive_client(
                &cgroup_options(&["--mode", "skip"]),
                client,
                &[when, own],
                "127.0.0.1",
            );
            assert_eq!(
                connected(&skip),
                strings(["0", "20", "3", "4", "5000"]),
                "skip, {client:?} {when}"
            );
            let force = keepalive_client(
                &cgroup_options(&["--mode", "force"]),
                client,
                &[when, own],
                "127.0.0.1",
            );
            assert_eq!(
                connected(&force),
                strings(CONFIGURED),
                "force, {client:?} {when}"
            );
        }
    }
    // skip sets the timings and leaves SO_KEEPALIVE alone.
    let skip = keepalive_client(
        &cgroup_options(&["--mode", "skip"]),
        Client::StaticMusl,
        &[],
        "127.0.0.1",
    );
    assert_eq!(connected(&skip), strings(["0", "7", "3", "4", "9000"]));
    // A bad call of the program's own still fails under force.
    let bad = keepalive_client(
        &cgroup_options(&["--mode", "force"]),
        Client::StaticGlibc,
        &["--before", "idle=0"],
        "127.0.0.1",
    );
    assert!(
        text(&bad.stdout).contains("failed setsockopt errno=22"),
        "{}",
        text(&bad.stdout)
    );
}

#[test]
fn off_changes_nothing() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let off = keepalive_client(
        &cgroup_options(&["--mode", "off"]),
        Client::StaticGlibc,
        &[],
        "127.0.0.1",
    );
    assert_eq!(connected(&off), kernel_defaults());
}

#[test]
fn accepted_connections_get_the_options_and_keep_the_listeners_own() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    for (listener_options, expected) in [
        ("", CONFIGURED),
        ("idle=20,keepalive=0", ["0", "20", "3", "4", "9000"]),
    ] {
        let port = listener("127.0.0.1").1; // a free port, released for the server
        let mut args = cgroup_options(&[]);
        args.push("--");
        let server = cgroup::server();
        let mut command = keepalive_command(&args);
        command.arg(&server);
        if !listener_options.is_empty() {
            command.args(["--before", listener_options]);
        }
        command
            .args(["127.0.0.1", &port])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = command.spawn().expect("keepalive starts");
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        assert_eq!(lines.next().expect("a line").expect("text"), "listening");
        let _client =
            std::net::TcpStream::connect(("127.0.0.1", port.parse().unwrap())).expect("connect");
        let accepted = lines.next().expect("an accepted line").expect("text");
        drop(child.stdin.take());
        assert!(child.wait().expect("keepalive ends").success());
        assert_eq!(
            options(&accepted),
            strings(expected),
            "listener set {listener_options:?}"
        );
    }
}

#[test]
fn exit_status_and_signals_pass_through() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let status = |args: &[&str]| {
        keepalive_command(&[&["--cgroup", "--"], args].concat())
            .status()
            .expect("starts")
    };
    assert_eq!(status(&["sh", "-c", "exit 7"]).code(), Some(7));
    assert_eq!(
        status(&["sh", "-c", "kill -TERM $$"]).code(),
        Some(128 + 15)
    );
    assert_eq!(status(&["/nonexistent/program"]).code(), Some(127));
    assert_eq!(status(&["/dev/null"]).code(), Some(126));

    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        // The shell reports the signal it got, then ends with its own status.
        let script = "trap 'echo got $1; exit 3' INT TERM HUP QUIT; echo ready; while :; do sleep 0.05; done";
        let mut child = keepalive_command(&["--cgroup", "--", "sh", "-c", script])
            .stdout(Stdio::piped())
            .spawn()
            .expect("starts");
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        assert_eq!(lines.next().expect("a line").expect("text"), "ready");
        // SAFETY: kill has no memory preconditions; the child is not yet reaped.
        unsafe { libc::kill(child.id() as i32, signal) };
        let status = child.wait().expect("keepalive ends");
        assert_eq!(status.code(), Some(3), "signal {signal}: {status:?}");
        assert!(status.signal().is_none());
    }
}

#[test]
fn nothing_is_left_behind() {
    let Some(_alone) = cgroup::start_alone() else {
        return;
    };
    let ours = cgroup::NewPrograms::from_now();
    // While it runs, the command is in a child cgroup of keepalive's own.
    let output = keepalive_command(&["--cgroup", "--", "cat", "/proc/self/cgroup"])
        .output()
        .expect("starts");
    let inside = text(&output.stdout);
    assert!(
        inside.contains("/keepalive-run."),
        "not in a child cgroup: {inside}"
    );
    let relative = inside
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup2 line");
    assert!(
        !cgroup::mount()
            .join(relative.trim_start_matches('/'))
            .exists(),
        "{relative} is left"
    );
    assert_eq!(run_cgroups(&own_cgroup()), Vec::<std::path::PathBuf>::new());
    ours.assert_freed("after a run");
}

#[test]
fn a_killed_runs_cgroup_is_removed_by_the_next_run() {
    let Some(_alone) = cgroup::start_alone() else {
        return;
    };
    let ours = cgroup::NewPrograms::from_now();
    let mut child = keepalive_command(&["--cgroup", "--", "sh", "-c", "echo ready; exec sleep 30"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("starts");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    assert_eq!(lines.next().expect("a line").expect("text"), "ready");
    let runs = run_cgroups(&own_cgroup());
    assert_eq!(runs.len(), 1, "{runs:?}");
    let stale = runs[0].clone();
    child.kill().expect("SIGKILL keepalive");
    child.wait().expect("reaped");
    // The command goes on in the cgroup, with the programs, until it ends.
    assert!(
        stale.exists(),
        "the cgroup of a killed run should stay while its command runs"
    );
    for pid in std::fs::read_to_string(stale.join("cgroup.procs"))
        .expect("procs")
        .lines()
    {
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(pid.parse().expect("a pid"), libc::SIGKILL) };
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(stale.join("cgroup.procs"))
        .unwrap_or_default()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the command did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        keepalive_command(&["--cgroup", "--", "true"])
            .status()
            .expect("starts")
            .success()
    );
    assert!(
        !stale.exists(),
        "the next run did not remove {}",
        stale.display()
    );
    ours.assert_freed("after the run that removed the killed one's cgroup");
}

#[test]
fn refused_without_privileges_and_nothing_is_created() {
    let Some(_alone) = cgroup::start_alone() else {
        return;
    };
    // setpriv (util-linux) drops to nobody with no capabilities.
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_keepalive"))
        .args(["--cgroup", "--idle", "7", "--", "true"])
        .output()
        .expect("setpriv (util-linux) runs");
    assert_eq!(output.status.code(), Some(125), "{}", text(&output.stderr));
    let message = text(&output.stderr);
    assert!(
        message.contains("CAP_BPF") && message.contains("root"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "one line: {message}");
    assert_eq!(run_cgroups(&own_cgroup()), Vec::<std::path::PathBuf>::new());
}

#[test]
fn attach_status_detach_round_trip_and_the_innermost_settings_apply() {
    let Some(_alone) = cgroup::start_alone() else {
        return;
    };
    let ours = cgroup::NewPrograms::from_now();
    let outer = TestCgroup::new("attach");
    let dir = outer.0.display().to_string();
    let attach = keepalive_command(&[&["cgroup", "attach"], &TIMING_OPTIONS[..], &[&dir]].concat())
        .output()
        .expect("starts");
    assert!(attach.status.success(), "{}", text(&attach.stderr));
    assert!(
        text(&attach.stdout).contains("not covered"),
        "{}",
        text(&attach.stdout)
    );

    assert_eq!(client_in(&outer, &[]), strings(CONFIGURED));
    let status = status_of(&outer.0).expect("status lists the cgroup");
    assert_eq!(status["idle"], 7);
    assert_eq!(status["mode"], "on");
    assert!(
        status["counters"]["connections"].as_u64() >= Some(1),
        "{status}"
    );
    assert_eq!(status["counters"]["options_failed"], 0, "{status}");

    // Attaching again replaces the settings.
    let again = keepalive_command(&["cgroup", "attach", "--idle", "11", "--mode", "force", &dir])
        .output()
        .expect("starts");
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(client_in(&outer, &[])[1], "11");
    assert_eq!(status_of(&outer.0).expect("listed")["mode"], "force");

    // A keepalive --cgroup run inside it: its own settings apply, not the outer ones.
    let inner = client_in(&outer, &["--cgroup", "--idle", "5", "--count", "2"]);
    let kernel_interval = support::kernel_defaults()[1].to_string();
    assert_eq!(
        inner,
        strings(["1", "5", &kernel_interval, "2", "0"]),
        "innermost settings"
    );

    let detach = keepalive_command(&["cgroup", "detach", &dir])
        .output()
        .expect("starts");
    assert!(detach.status.success(), "{}", text(&detach.stderr));
    assert!(status_of(&outer.0).is_none(), "still listed after detach");
    assert_eq!(client_in(&outer, &[]), kernel_defaults());
    let again = keepalive_command(&["cgroup", "detach", &dir])
        .output()
        .expect("starts");
    assert_eq!(again.status.code(), Some(125));
    assert!(
        text(&again.stderr).contains("not attached"),
        "{}",
        text(&again.stderr)
    );
    drop(outer);
    ours.assert_freed("after detach");
}

/// The systemd example's pin command and BPFProgram= lines, with its bpffs directory
/// replaced by `pins`.
fn systemd_example(pins: &str) -> (Vec<String>, Vec<(String, String)>) {
    let path = support::root().join("examples/systemd/cgroup.conf");
    let text = std::fs::read_to_string(&path).expect("the systemd example");
    let pin_line = text
        .lines()
        .find_map(|l| l.split_once("keepalive cgroup pin "))
        .expect("a pin command")
        .1;
    let mut pin_args: Vec<String> = pin_line.split_whitespace().map(String::from).collect();
    let example_dir = pin_args.pop().expect("a BPFFS_PATH");
    let programs = text
        .lines()
        .filter_map(|l| l.strip_prefix("BPFProgram="))
        .map(|l| {
            let (hook, path) = l.split_once(':').expect("TYPE:PATH");
            (hook.to_string(), path.replace(&example_dir, pins))
        })
        .collect();
    (pin_args, programs)
}

#[test]
fn the_systemd_examples_pinned_programs_work_when_attached_as_systemd_does() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let cgroup = TestCgroup::new("pin");
    let pins = format!("/sys/fs/bpf/ka-test-pin-{}", std::process::id());
    let _ = std::fs::remove_dir_all(&pins);
    let (pin_args, programs) = systemd_example(&pins);
    assert_eq!(programs.len(), 2, "{programs:?}");
    let mut args = vec!["cgroup", "pin"];
    args.extend(pin_args.iter().map(String::as_str));
    args.push(&pins);
    let pin = keepalive_command(&args).output().expect("starts");
    assert!(pin.status.success(), "{}", text(&pin.stderr));
    for (hook, path) in &programs {
        assert!(
            text(&pin.stdout).contains(&format!("BPFProgram={hook}:{path}")),
            "pin does not print the example's lines: {}",
            text(&pin.stdout)
        );
    }
    // systemd attaches BPFProgram= programs with BPF_F_ALLOW_MULTI.
    let dir = cgroup.0.display().to_string();
    let bpftool = |verb: &str, hook: &str, path: &str, multi: &[&str]| {
        Command::new("bpftool")
            .args(["cgroup", verb, &dir, hook, "pinned", path])
            .args(multi)
            .output()
            .expect("bpftool runs")
    };
    for (hook, path) in &programs {
        let attached = bpftool("attach", hook, path, &["multi"]);
        assert!(attached.status.success(), "{}", text(&attached.stderr));
    }
    let got = client_in(&cgroup, &[]);
    for (hook, path) in &programs {
        bpftool("detach", hook, path, &[]);
    }
    let _ = std::fs::remove_dir_all(&pins);
    // --idle 60 --interval 10 --count 5 --user-timeout auto: 60 + 10 × 5 s.
    assert_eq!(got, strings(["1", "60", "10", "5", "110000"]));
}

#[test]
fn a_cgroup_that_does_not_exist_is_refused_clearly() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    for action in ["attach", "detach"] {
        let output = keepalive_command(&["cgroup", action, "no/such/cgroup"])
            .output()
            .expect("starts");
        assert_eq!(
            output.status.code(),
            Some(125),
            "{action}: {}",
            text(&output.stderr)
        );
        let message = text(&output.stderr);
        assert!(
            message.contains("no/such/cgroup") && message.contains("No such file"),
            "{message}"
        );
    }
}
