//! `keepalive inspect` and `keepalive apply` on processes the tests start: the values
//! shown must be those the process itself reads from the kernel, and apply must change
//! the live TCP sockets (read back from inside the process) and nothing else.

#[path = "support/cli.rs"]
mod cli;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;

use cli::{
    Held, IN_NEW_NETWORK_NAMESPACE, TIMING_OPTIONS, clean, inspect_json, is_root, keepalive,
    keepalive_command, run_keepalive, socket_at, start_holder, start_holder_via, text,
};
use serde_json::Value;
use support::{probe, require};

const TCP: [&str; 6] = [
    "listen4", "client4", "server4", "listen6", "client6", "server6",
];
const OTHERS: [&str; 3] = ["udp4", "unix_a", "unix_b"];

/// The probe holding `kinds` open, started through keepalive with `options` (or
/// directly), and its own report: kind -> (fd, [keepalive, idle, intvl, cnt, user_timeout]).
fn held_probe(
    options: Option<&[&str]>,
    kinds: &[&str],
) -> (Held, HashMap<String, (i64, Vec<i64>)>) {
    let mut command = match options {
        Some(options) => {
            let mut command = keepalive_command(options);
            command.arg("--").arg(probe());
            command
        }
        None => clean(probe()),
    };
    command.arg("--hold").args(kinds);
    let (held, lines) = Held::start(command);
    let report = lines
        .iter()
        .filter(|l| l.starts_with("kind="))
        .map(|line| {
            let fields: HashMap<&str, &str> = line
                .split_whitespace()
                .filter_map(|f| f.split_once('='))
                .collect();
            let number = |key: &str| fields[key].parse::<i64>().unwrap_or(-1);
            let values = ["keepalive", "idle", "intvl", "cnt", "user_timeout"]
                .map(number)
                .to_vec();
            (fields["kind"].to_string(), (number("fd"), values))
        })
        .collect();
    (held, report)
}

/// [keepalive, idle, interval, count, user timeout] of one socket of `inspect --json`.
fn inspected_options(socket: &Value) -> Vec<i64> {
    let keepalive = i64::from(
        socket["keepalive"]
            .as_bool()
            .expect("keepalive is a boolean"),
    );
    let mut values = vec![keepalive];
    values.extend(
        ["idle_s", "interval_s", "count", "user_timeout_ms"].map(|k| socket[k].as_i64().expect(k)),
    );
    values
}

/// The same five values as the holder read them from inside itself.
fn reported_options(report: &Value) -> Vec<i64> {
    [
        "keepalive",
        "idle_s",
        "interval_s",
        "count",
        "user_timeout_ms",
    ]
    .map(|k| report[k].as_i64().expect(k))
    .to_vec()
}

fn fd_of(layout: &Value, name: &str) -> i64 {
    layout[name]["fd"].as_i64().expect("an fd")
}

#[test]
fn inspect_reads_the_probes_real_values_with_and_without_the_library() {
    let kinds = ["tcp4", "tcp6", "udp4", "unix-stream"];
    for options in [Some(&TIMING_OPTIONS[..]), None] {
        let (held, report) = held_probe(options, &kinds);
        let inspected = inspect_json(held.pid());
        let process = &inspected[0];
        assert_eq!(process["pid"].as_i64(), Some(i64::from(held.pid())));
        assert_eq!(process["command"], "probe");
        let listed: Vec<i64> = process["sockets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["fd"].as_i64().unwrap())
            .collect();
        assert_eq!(
            listed,
            [report["tcp4"].0, report["tcp6"].0],
            "only the TCP sockets, in fd order"
        );
        for (kind, family) in [("tcp4", "ipv4"), ("tcp6", "ipv6")] {
            let (fd, values) = &report[kind];
            let socket = socket_at(process, *fd).unwrap();
            assert_eq!(
                &inspected_options(socket),
                values,
                "{kind} with options {options:?}"
            );
            assert_eq!(socket["family"], family);
            assert_eq!(
                socket["state"], "CLOSE",
                "never connected, so not in /proc/net/tcp"
            );
        }
        let expected_keepalive = i64::from(options.is_some());
        assert_eq!(
            report["tcp4"].1[0], expected_keepalive,
            "the probe saw the library (or not)"
        );
    }
}

#[test]
fn inspect_shows_states_addresses_and_the_time_to_the_next_probe() {
    let (mut held, layout) =
        start_holder(Some(&["--idle", "30", "--interval", "5", "--count", "3"]));
    let inside = held.ask("report");
    let inspected = inspect_json(held.pid());
    let process = &inspected[0];
    for name in TCP {
        let socket =
            socket_at(process, fd_of(&layout, name)).unwrap_or_else(|| panic!("{name} not listed"));
        assert_eq!(
            inspected_options(socket),
            reported_options(&inside[name]),
            "{name}"
        );
        assert_eq!(socket["local"], layout[name]["local"], "{name}");
        assert_eq!(socket["remote"], layout[name]["remote"], "{name}");
        let listening = name.starts_with("listen");
        assert_eq!(
            socket["state"],
            if listening { "LISTEN" } else { "ESTABLISHED" },
            "{name}"
        );
        let next = socket["next_probe_s"].as_f64();
        if listening {
            assert_eq!(next, None, "{name}: no probes on a listener");
        } else {
            let next = next.unwrap_or_else(|| panic!("{name}: no keepalive timer in {socket}"));
            assert!(
                next > 0.0 && next <= 30.0,
                "{name}: next probe in {next} s, idle is 30 s"
            );
        }
    }
    for name in OTHERS {
        assert!(
            socket_at(process, fd_of(&layout, name)).is_none(),
            "{name} is not TCP"
        );
    }
}

#[test]
fn the_table_has_one_row_per_tcp_socket() {
    let (held, layout) = start_holder(None);
    let output = run_keepalive(&["inspect", &held.pid().to_string()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next().unwrap(),
        format!("PID {} ({}): 6 TCP sockets", held.pid(), comm(held.pid()))
    );
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header[..3], ["FD", "PROTO", "STATE"]);
    let rows: Vec<Vec<&str>> = lines
        .filter(|l| !l.is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), TCP.len(), "{stdout}");
    for name in TCP {
        let fd = fd_of(&layout, name).to_string();
        let row = rows
            .iter()
            .find(|r| r[0] == fd)
            .unwrap_or_else(|| panic!("no row for {name}: {stdout}"));
        assert_eq!(row[1], "tcp");
        assert_eq!(row[3], layout[name]["local"].as_str().unwrap());
        assert_eq!(row[5], "off", "no library, no keepalive: {stdout}");
        assert_eq!(
            row.last().copied(),
            Some("-"),
            "no keepalive timer without keepalive"
        );
    }
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap()
        .trim_end()
        .to_string()
}

#[test]
fn apply_changes_the_live_tcp_sockets_and_nothing_else() {
    let (mut held, layout) = start_holder(None);
    let before = held.ask("report");
    let pid = held.pid().to_string();
    let args = [
        "apply",
        &pid,
        "--idle",
        "20",
        "--interval",
        "4",
        "--count",
        "5",
        "--user-timeout",
        "auto",
        "--json",
    ];
    let output = run_keepalive(&args);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let applied: Value = serde_json::from_slice(&output.stdout).expect("apply --json prints JSON");

    let after = held.ask("report");
    for name in TCP {
        assert_eq!(
            reported_options(&after[name]),
            [1, 20, 4, 5, (20 + 4 * 5) * 1000],
            "{name}"
        );
        let change = socket_at(&applied[0], fd_of(&layout, name)).unwrap();
        assert_eq!(
            inspected_options(&change["before"]),
            reported_options(&before[name]),
            "{name}"
        );
        assert_eq!(
            inspected_options(&change["after"]),
            reported_options(&after[name]),
            "{name}"
        );
        assert_eq!(change["error"], Value::Null);
    }
    for name in OTHERS {
        assert_eq!(after[name], before[name], "{name} must be left alone");
        assert_eq!(after[name]["keepalive"], 0, "{name}");
    }
    let inspected = inspect_json(held.pid());
    let next =
        socket_at(&inspected[0], fd_of(&layout, "client4")).unwrap()["next_probe_s"].as_f64();
    assert!(
        next.is_some_and(|s| s > 0.0 && s <= 20.0),
        "the keepalive timer now runs: {next:?}"
    );
}

#[test]
fn dry_run_reports_the_change_and_makes_none() {
    let (mut held, layout) = start_holder(None);
    let before = held.ask("report");
    let output = run_keepalive(&[
        "apply",
        "--dry-run",
        "--idle",
        "45",
        &held.pid().to_string(),
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("dry run: nothing changed"), "{stdout}");
    let idle_before = before["client4"]["idle_s"].as_i64().unwrap();
    let fd = fd_of(&layout, "client4").to_string();
    let row = stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(fd.as_str()))
        .expect("a row for client4");
    assert!(row.contains("off -> on"), "{row}");
    assert!(row.contains(&format!("{idle_before}s -> 45s")), "{row}");
    assert_eq!(held.ask("report"), before, "a dry run changes nothing");
}

#[test]
fn a_process_that_does_not_exist_is_reported_and_the_others_still_are() {
    let (held, _) = held_probe(None, &["tcp4"]);
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let gone_pid = gone.id().to_string();
    gone.wait().unwrap();
    let output = run_keepalive(&["inspect", "--json", &gone_pid, &held.pid().to_string()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains(&format!("process {gone_pid}: no such process")));
    let entries: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        entries[0]["error"],
        format!("process {gone_pid}: no such process")
    );
    assert_eq!(entries[1]["sockets"].as_array().unwrap().len(), 1);
}

#[test]
fn apply_refuses_bad_timings_like_the_library() {
    let output = run_keepalive(&["apply", "1", "--count", "0"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("is out of range; accepted: a whole number from 1 to 127")
    );
}

#[test]
fn without_the_right_to_trace_the_message_names_root_and_cap_sys_ptrace() {
    let setpriv = std::path::Path::new("/usr/bin/setpriv");
    if !require(
        is_root() && setpriv.exists(),
        "root and setpriv, to run as another user",
    ) {
        return;
    }
    let (held, report) = held_probe(None, &["tcp4"]);
    assert_eq!(report.len(), 1);
    for subcommand in ["inspect", "apply"] {
        let output = clean(setpriv)
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
                "--",
            ])
            .arg(keepalive())
            .args([subcommand, &held.pid().to_string()])
            .output()
            .unwrap();
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{subcommand}: {stderr}");
        assert!(stderr.contains("permission denied"), "{stderr}");
        assert!(stderr.contains("root or with CAP_SYS_PTRACE"), "{stderr}");
        let yama = std::path::Path::new("/proc/sys/kernel/yama/ptrace_scope").exists();
        assert_eq!(
            stderr.contains("yama"),
            yama,
            "the Yama setting is named only where it exists: {stderr}"
        );
    }
}

/// `keepalive ARGS` with its standard output on a socket whose reading end is already
/// closed, so that every write fails with EPIPE, as under `| head` once head has
/// exited; deterministic, unlike a real `head`, which may read everything first.
fn with_reader_gone(args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::os::unix::net::UnixStream::pair().expect("a socket pair");
    drop(reader);
    keepalive_command(args)
        .stdout(std::os::fd::OwnedFd::from(writer))
        .output()
        .expect("keepalive starts")
}

#[test]
fn a_reader_that_stops_early_ends_the_report_quietly() {
    let (held, _) = held_probe(None, &["tcp4", "tcp6"]);
    let pid = held.pid().to_string();
    for args in [
        &["inspect", &pid][..],
        &["inspect", "--json", &pid],
        &["apply", "--dry-run", "--idle", "30", &pid],
        &["apply", "--dry-run", "--idle", "30", "--json", &pid],
    ] {
        let output = with_reader_gone(args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?}: nothing to say about a closed pipe");
    }
}

#[test]
fn help_and_generated_scripts_end_quietly_on_a_closed_pipe() {
    let dir = support::TempDir::new("man-pages");
    let man_dir = dir.0.to_str().unwrap();
    for args in [
        &["generate", "completions", "bash"][..],
        &["generate", "completions", "zsh"],
        &["generate", "man", man_dir],
        &["--help"],
        &["inspect", "--help"],
        &["--version"],
    ] {
        let output = with_reader_gone(args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?}: nothing to say about a closed pipe");
    }
    assert!(dir.0.join("keepalive.1").exists(), "man pages go to files");
}

#[test]
fn a_report_that_cannot_be_written_is_an_error_without_a_panic() {
    let (held, _) = held_probe(None, &["tcp4"]);
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let output = keepalive_command(&["inspect", &held.pid().to_string()])
        .stdout(full)
        .output()
        .expect("keepalive starts");
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "keepalive: writing the report: No space left on device (os error 28)"
    );
}

/// Sets net.ipv4.tcp_keepalive_NAME inside the network namespace of process `pid`.
fn set_namespace_sysctl(pid: i32, name: &str, value: u32) {
    let output = clean("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["sh", "-c", "echo \"$1\" > \"$2\"", "sh"])
        .arg(value.to_string())
        .arg(format!("/proc/sys/net/ipv4/tcp_keepalive_{name}"))
        .output()
        .expect("nsenter (util-linux) is installed");
    assert!(output.status.success(), "{}", text(&output.stderr));
}

#[test]
fn apply_writes_only_what_was_asked_and_the_rest_keeps_following_the_sysctl() {
    if !require(is_root(), "root, for a network namespace of its own") {
        return;
    }
    // A namespace of its own, so that changing its sysctls disturbs nothing else.
    let mut command = clean("unshare");
    command
        .args(["--net", "--"])
        .arg(probe())
        .args(["--hold", "tcp4"]);
    let (held, _) = Held::start(command);
    let pid = held.pid();
    let output = run_keepalive(&["apply", "--json", "--idle", "20", &pid.to_string()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let applied: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let change = &applied[0]["sockets"][0];
    assert_eq!(
        change["set"],
        serde_json::json!(["TCP_KEEPIDLE", "SO_KEEPALIVE"])
    );

    set_namespace_sysctl(pid, "intvl", 33);
    set_namespace_sysctl(pid, "probes", 4);
    let socket = &inspect_json(pid)[0]["sockets"][0];
    assert_eq!(
        inspected_options(socket)[..4],
        [1, 20, 33, 4],
        "interval and count still follow the namespace's sysctl: {socket}"
    );
}

/// `keepalive ARGS` run where reading TCP_KEEPCNT fails, so that every TCP socket it
/// looks at has to be left out.
fn where_keepcnt_cannot_be_read(args: &[&str]) -> std::process::Output {
    let refuse = support::compile(
        "cli/tests/support/refuse_getsockopt.c",
        "refuse_getsockopt",
        &[],
    );
    clean(refuse)
        .arg(keepalive())
        .args(args)
        .output()
        .expect("refuse_getsockopt starts")
}

#[test]
fn a_socket_left_out_is_named_and_makes_the_exit_status_1() {
    let (held, report) = held_probe(None, &["tcp4", "udp4"]);
    let fd = report["tcp4"].0;
    let pid = held.pid().to_string();
    for args in [
        &["inspect", "--json", &pid][..],
        &["apply", "--json", "--idle", "30", &pid],
    ] {
        let output = where_keepcnt_cannot_be_read(args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(&format!("fd {fd} left out")), "{stderr}");
        let entries: Value = serde_json::from_slice(&output.stdout).expect("JSON");
        assert_eq!(entries[0]["sockets"], serde_json::json!([]), "{args:?}");
        assert_eq!(entries[0]["left_out"][0]["fd"], fd, "{args:?}");
    }
    let output = where_keepcnt_cannot_be_read(&["inspect", &pid]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stdout).contains("0 TCP sockets, 1 left out"));
}

/// Inspects, applies and inspects again the holder's TCP sockets, and checks that
/// states, addresses and values are the ones the holder itself sees, wherever the
/// sockets live.
fn inspect_and_apply_see_the_holder_as_it_is(held: &mut Held, layout: &Value) {
    let pid = held.pid().to_string();
    let inspected = inspect_json(held.pid());
    for name in TCP {
        let socket = socket_at(&inspected[0], fd_of(layout, name))
            .unwrap_or_else(|| panic!("{name} not listed"));
        let listening = name.starts_with("listen");
        assert_eq!(
            socket["state"],
            if listening { "LISTEN" } else { "ESTABLISHED" },
            "{name}: {socket}"
        );
        assert_eq!(socket["local"], layout[name]["local"], "{name}");
        assert_eq!(socket["remote"], layout[name]["remote"], "{name}");
    }
    let output = run_keepalive(&["apply", &pid, "--idle", "20", "--interval", "4", "--json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let after = held.ask("report");
    let inspected = inspect_json(held.pid());
    for name in TCP {
        assert_eq!(reported_options(&after[name])[..3], [1, 20, 4], "{name}");
        let socket = socket_at(&inspected[0], fd_of(layout, name)).unwrap();
        let next = socket["next_probe_s"].as_f64();
        if name.starts_with("listen") {
            assert_eq!(next, None, "{name}");
        } else {
            assert!(
                next.is_some_and(|s| s > 0.0 && s <= 20.0),
                "{name}: the keepalive timer runs: {socket}"
            );
        }
    }
}

#[test]
fn sockets_made_in_another_network_namespace_are_read_from_the_sockets() {
    if !require(
        is_root(),
        "root, to move a process between network namespaces",
    ) {
        return;
    }
    // Made in a namespace of its own, then moved back into this test's namespace:
    // /proc/PID/net/tcp now lists this namespace, where none of its sockets are.
    let here = format!("/proc/{}/ns/net", std::process::id());
    let (mut held, layout) = start_holder_via(&IN_NEW_NETWORK_NAMESPACE, &["--setns", &here]);
    let own = std::fs::read_link(format!("/proc/{}/ns/net", held.pid())).unwrap();
    assert_eq!(own, std::fs::read_link(&here).unwrap(), "the holder moved");
    inspect_and_apply_see_the_holder_as_it_is(&mut held, &layout);
}

#[test]
fn a_process_in_a_network_namespace_of_its_own_is_read_as_it_is() {
    if !require(is_root(), "root, for a network namespace of its own") {
        return;
    }
    let (mut held, layout) = start_holder_via(&IN_NEW_NETWORK_NAMESPACE, &[]);
    inspect_and_apply_see_the_holder_as_it_is(&mut held, &layout);
}

/// `keepalive ARGS` under a soft limit of 1024 open files, as a login shell has.
fn keepalive_with_1024_files(args: &[&str]) -> std::process::Output {
    clean("sh")
        .args(["-c", "ulimit -Sn 1024 && exec \"$0\" \"$@\""])
        .arg(keepalive())
        .args(args)
        .env("KEEPALIVE_LIBRARY", support::library())
        .output()
        .expect("sh starts")
}

#[test]
fn thousands_of_sockets_are_handled_past_the_commands_own_file_limit() {
    const PAIRS: usize = 1500; // 3,000 connected sockets, plus the holder's others
    let (mut held, layout) = start_holder_via(&["env"], &["--pairs", &PAIRS.to_string()]);
    let pid = held.pid().to_string();
    let tcp_sockets = TCP.len() + 1 + 2 * PAIRS;

    let output = keepalive_with_1024_files(&["inspect", "--json", &pid]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let inspected: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        inspected[0]["sockets"].as_array().unwrap().len(),
        tcp_sockets
    );

    let output = keepalive_with_1024_files(&["apply", "--json", &pid, "--idle", "33"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let applied: Value = serde_json::from_slice(&output.stdout).unwrap();
    let changes = applied[0]["sockets"].as_array().unwrap();
    assert_eq!(changes.len(), tcp_sockets);
    assert!(
        changes
            .iter()
            .all(|c| c["error"].is_null() && c["after"]["idle_s"] == 33)
    );
    // From inside: the last connection made holds the new value.
    let last = format!("pair{}_client", PAIRS - 1);
    assert!(layout[&last]["fd"].as_i64().is_some());
    assert_eq!(held.ask("report")["client4"]["idle_s"], 33);
}

#[test]
fn a_skipped_test_says_so_on_standard_error_and_fails_under_ci() {
    let setpriv = std::path::Path::new("/usr/bin/setpriv");
    if !require(
        is_root() && setpriv.exists(),
        "root and setpriv, to run a test as another user",
    ) {
        return;
    }
    let skipped = "a_process_in_a_network_namespace_of_its_own_is_read_as_it_is";
    let as_nobody = |ci: &str| {
        clean(setpriv)
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(std::env::current_exe().unwrap())
            .args([skipped, "--exact"])
            .env("CI", ci)
            .output()
            .unwrap()
    };
    let output = as_nobody("");
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "SKIPPED: {skipped}: root, for a network namespace"
        )),
        "the skip is visible: {stderr}"
    );
    assert!(stderr.contains("SKIPPED: 1 test(s) of "), "{stderr}");
    let output = as_nobody("true");
    assert!(!output.status.success(), "under CI=true a skip fails");
}

#[test]
fn a_zombie_is_said_to_have_exited_with_no_sockets() {
    // The child exits once the shell has become `sleep` (which never reaps it); a
    // child that ended before the exec could be reaped by the shell.
    let mut parent = clean("sh")
        .args(["-c", "sleep 0.3 & echo $!; exec sleep 30"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(parent.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let zombie = line.trim().to_string();
    let stat = |pid: &str| std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !stat(&zombie).contains(") Z") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(stat(&zombie).contains(") Z"), "{zombie} is a zombie");
    let output = run_keepalive(&["inspect", &zombie]);
    let _ = parent.kill();
    let _ = parent.wait();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "process {zombie}: has exited and holds no sockets"
        )),
        "{stderr}"
    );
}

#[test]
fn apply_says_which_option_an_mptcp_socket_cannot_take() {
    let (held, report) = held_probe(None, &["mptcp4", "tcp4"]);
    if !require(
        report["mptcp4"].0 >= 0,
        "a kernel that can create MPTCP sockets",
    ) {
        return;
    }
    let pid = held.pid().to_string();
    let args = ["apply", &pid, "--idle", "20", "--user-timeout", "auto"];
    let output = run_keepalive(&[&args[..], &["--json"]].concat());
    assert!(output.status.success(), "{}", text(&output.stderr));
    let applied: Value = serde_json::from_slice(&output.stdout).unwrap();
    let mptcp = socket_at(&applied[0], report["mptcp4"].0).unwrap();
    assert_eq!(mptcp["not_set"][0]["option"], "TCP_USER_TIMEOUT", "{mptcp}");
    let tcp = socket_at(&applied[0], report["tcp4"].0).unwrap();
    assert_eq!(tcp["not_set"], serde_json::json!([]), "{tcp}");
    let [_, interval, count] = support::kernel_defaults();
    assert_eq!(
        tcp["after"]["user_timeout_ms"],
        (20 + interval * count) * 1000
    );

    let output = run_keepalive(&args);
    let stdout = text(&output.stdout);
    let row = stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("mptcp"))
        .unwrap_or_else(|| panic!("no mptcp row: {stdout}"));
    assert!(row.contains("TCP_USER_TIMEOUT not set: MPTCP"), "{row}");
}
