//! `keepalive cgroup attach --existing`: connections established before the attach, by
//! a server and two clients in two network namespaces joined by a veth pair (see
//! tests/support/netns.rs), each process in a cgroup the test made below the attach
//! target. What each connection holds afterwards is read from outside the processes
//! (pidfd_getfd + getsockopt), under modes on, force and off.
//!
//! One client sets SO_KEEPALIVE and an idle time of its own before connecting; the
//! other sets nothing. The client namespace's net.ipv4.tcp_keepalive_time is 5000, unlike
//! the host's and the server namespace's 7200: the untouched client's idle of 5000 must
//! be recognised as that namespace's default, not as the program's own.

#[path = "support/cgroup.rs"]
mod cgroup;
#[path = "support/cli.rs"]
mod cli;
#[allow(dead_code)] // the other network tests use the rest of the test bed
#[path = "../../tests/support/netns.rs"]
mod netns;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::process::Output;
use std::time::{Duration, Instant};

use cgroup::{Client, TestCgroup, status_of};
use cli::{run_keepalive, text};
use netns::{Bed, Proc, SERVER_V4, Side, tcp_socket_options};

const TIMINGS: [&str; 6] = ["--idle", "31", "--interval", "7", "--count", "4"];
/// What the one client sets itself between socket() and connect().
const OWN_SPEC: &str = "keepalive=1,idle=100";
const CLIENT_NAMESPACE_IDLE: i64 = 5000;
const PORT: &str = "7301";
const START: Duration = Duration::from_secs(20);

/// SO_KEEPALIVE, idle, interval, count and user timeout, as read from outside.
type Read = [i64; 5];
/// Each side after TIMINGS was applied to it.
const CONFIGURED: Read = [1, 31, 7, 4, 0];

/// Everything one case makes, removed in this order when dropped (also when the test
/// fails): the processes, the cgroups from the innermost out (detaching the target),
/// then the namespaces.
struct Scene {
    server: Proc,
    plain: Proc,
    own: Proc,
    _own_cgroup: TestCgroup,
    _clients_cgroup: TestCgroup,
    _server_cgroup: TestCgroup,
    target: TestCgroup,
    bed: Bed,
}

/// Waits until `proc` has printed `n` lines starting with `prefix`.
fn wait_lines(proc: &mut Proc, prefix: &str, n: usize) {
    let deadline = Instant::now() + START;
    while proc
        .lines()
        .iter()
        .filter(|(_, l)| l.starts_with(prefix))
        .count()
        < n
    {
        assert!(
            Instant::now() < deadline && proc.poll().is_none(),
            "no {n} {prefix:?} lines\n{}",
            proc.report()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Scene {
    /// Two namespaces; a server in one, in target/server; in the other, with its
    /// tcp_keepalive_time set to 5000, an untouched client in target/clients and a
    /// client with settings of its own in target/clients/own; all connected.
    fn new(name: &str) -> Option<Scene> {
        let bed = Bed::new()?;
        bed.output(
            Side::Client,
            "sh",
            &[
                "-c",
                &format!("echo {CLIENT_NAMESPACE_IDLE} > /proc/sys/net/ipv4/tcp_keepalive_time"),
            ],
        );
        let target = TestCgroup::new(name);
        let server_cgroup = target.child("server");
        let clients_cgroup = target.child("clients");
        let own_cgroup = clients_cgroup.child("own");
        let client = Client::StaticGlibc.path();
        let mut server = bed.spawn_in_cgroup(
            Side::Server,
            &server_cgroup.0,
            "server",
            &cgroup::server(),
            &["--count", "2", SERVER_V4, PORT],
        );
        server.wait_line("listening", START);
        let mut plain = bed.spawn_in_cgroup(
            Side::Client,
            &clients_cgroup.0,
            "plain client",
            &client,
            &["--wait", SERVER_V4, PORT],
        );
        plain.wait_line("connected", START);
        let mut own = bed.spawn_in_cgroup(
            Side::Client,
            &own_cgroup.0,
            "client with its own settings",
            &client,
            &["--before", OWN_SPEC, "--wait", SERVER_V4, PORT],
        );
        own.wait_line("connected", START);
        wait_lines(&mut server, "accepted", 2);
        Some(Scene {
            server,
            plain,
            own,
            _own_cgroup: own_cgroup,
            _clients_cgroup: clients_cgroup,
            _server_cgroup: server_cgroup,
            target,
            bed,
        })
    }

    /// `keepalive cgroup attach --existing --mode MODE TIMINGS TARGET`, run through
    /// `launcher` (a command that ends by exec'ing keepalive) if not empty.
    fn run_attach(&self, launcher: &[&str], mode: &str) -> Output {
        let target = self.target.0.display().to_string();
        let mut args = vec!["cgroup", "attach", "--existing", "--mode", mode];
        args.extend(TIMINGS);
        args.push(&target);
        let Some((program, launcher_args)) = launcher.split_first() else {
            return run_keepalive(&args);
        };
        let mut command = cli::clean(program);
        command.args(launcher_args).arg(cli::keepalive()).args(args);
        command.output().expect("the launcher starts")
    }

    /// [`Scene::run_attach`] without a launcher: its standard output, after checking
    /// it succeeded.
    fn attach_existing(&self, mode: &str) -> String {
        let output = self.run_attach(&[], mode);
        let stdout = text(&output.stdout);
        assert!(
            output.status.success() && output.stderr.is_empty(),
            "{:?}\n{stdout}\n{}",
            output.status,
            text(&output.stderr)
        );
        assert!(
            !stdout.contains("established before now are not covered"),
            "{stdout}"
        );
        stdout
    }

    /// The connections each process holds, read from outside it.
    fn read(&self) -> [Vec<Read>; 3] {
        [&self.server, &self.plain, &self.own].map(|p| tcp_socket_options(p.pid()))
    }

    fn counters(&self) -> serde_json::Value {
        status_of(&self.target.0).expect("status lists the target")["counters"].clone()
    }
}

/// Runs one case: `mode`, what each process's connections read before and after, the
/// `--existing:` line, and the options it set.
fn case(name: &str, mode: &str, after: [Vec<Read>; 3], line: &str, options: u64) {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let Some(scene) = Scene::new(name) else {
        return;
    };
    let default_server = [0, 7200, 75, 9, 0];
    let before = [
        vec![default_server; 2],
        vec![[0, CLIENT_NAMESPACE_IDLE, 75, 9, 0]],
        vec![[1, 100, 75, 9, 0]],
    ];
    assert_eq!(scene.read(), before, "before the attach");
    let stdout = scene.attach_existing(mode);
    assert!(
        stdout
            .lines()
            .any(|l| l == format!("keepalive: --existing: {line}")),
        "{stdout}"
    );
    assert_eq!(
        scene.read(),
        after,
        "server, plain client, client with its own settings\n{}",
        scene.bed.connections()
    );
    let changed = after
        .iter()
        .flatten()
        .zip(before.iter().flatten())
        .filter(|(a, b)| a != b)
        .count() as u64;
    let counters = scene.counters();
    assert_eq!(counters["existing_applied"], 1, "{counters}");
    assert_eq!(counters["existing_connections"], changed, "{counters}");
    assert_eq!(counters["existing_options"], options, "{counters}");
}

#[test]
fn on_sets_both_sides_and_keeps_what_a_program_set_itself() {
    case(
        "existing-on",
        "on",
        [
            vec![CONFIGURED; 2],
            vec![CONFIGURED],
            vec![[1, 100, 7, 4, 0]],
        ],
        "changed 4 of 4 connections (14 options) in 3 processes, 2 network namespaces",
        14,
    );
}

#[test]
fn force_replaces_what_a_program_set_itself() {
    case(
        "existing-force",
        "force",
        [vec![CONFIGURED; 2], vec![CONFIGURED], vec![CONFIGURED]],
        "changed 4 of 4 connections (15 options) in 3 processes, 2 network namespaces",
        15,
    );
}

#[test]
fn off_changes_nothing() {
    case(
        "existing-off",
        "off",
        [
            vec![[0, 7200, 75, 9, 0]; 2],
            vec![[0, CLIENT_NAMESPACE_IDLE, 75, 9, 0]],
            vec![[1, 100, 75, 9, 0]],
        ],
        "changed 0 of 4 connections (0 options) in 3 processes, 2 network namespaces",
        0,
    );
}

/// keepalive with the right to load BPF programs but not to trace other processes:
/// root with CAP_SYS_PTRACE dropped.
const WITHOUT_PTRACE: [&str; 3] = ["setpriv", "--bounding-set=-sys_ptrace", "--inh-caps=-all"];

#[test]
fn processes_out_of_reach_are_named_and_the_exit_status_is_1_with_the_programs_attached() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let Some(scene) = Scene::new("existing-denied") else {
        return;
    };
    let before = scene.read();
    let output = scene.run_attach(&WITHOUT_PTRACE, "on");
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    let report = format!("{:?}\n{stdout}\n{stderr}", output.status);
    assert_eq!(output.status.code(), Some(1), "{report}");
    for proc in [&scene.server, &scene.plain, &scene.own] {
        let named = format!("keepalive: --existing: PID {} (", proc.pid());
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&named) && l.contains("permission denied")),
            "{report}"
        );
    }
    assert!(
        stdout.lines().any(|l| l
            == "keepalive: --existing: changed 0 of 0 connections (0 options) in 0 processes, \
                0 network namespaces"),
        "{report}"
    );
    assert_eq!(scene.read(), before, "nothing changed");
    let status = status_of(&scene.target.0).expect("still attached");
    assert_eq!(status["attached"], true, "{status}");
    assert_eq!(status["counters"]["existing_applied"], 1, "{status}");
}

/// A cgroup below with a keepalive attachment of its own is left to it, whose settings
/// its processes get; and each connection is changed once: a second `--existing` finds
/// them configured by an attachment already and leaves them as they are.
#[test]
fn inner_attachments_keep_their_processes_and_a_second_run_changes_nothing() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let Some(scene) = Scene::new("existing-nested") else {
        return;
    };
    let inner = scene._own_cgroup.0.display().to_string();
    let attached = run_keepalive(&["cgroup", "attach", "--idle", "12", &inner]);
    assert!(attached.status.success(), "{}", text(&attached.stderr));
    let own_before = tcp_socket_options(scene.own.pid());

    let first = scene.attach_existing("force");
    assert!(
        first.contains("changed 3 of 3 connections (12 options) in 2 processes")
            && first.contains(&format!("left to its own attachment: {inner}")),
        "{first}"
    );
    let forced = [1, 31, 7, 4, 0];
    let expected = [vec![forced; 2], vec![forced], own_before];
    assert_eq!(scene.read(), expected, "{first}");

    let second = scene.attach_existing("force");
    assert!(
        second.contains("changed 0 of 3 connections (0 options)")
            && second.contains("3 connections configured by an attachment already"),
        "{second}"
    );
    assert_eq!(scene.read(), expected, "{second}");
    let counters = scene.counters();
    assert_eq!(counters["existing_applied"], 2, "{counters}");
    assert_eq!(counters["existing_connections"], 3, "{counters}");
    // keepalive's own writes were not taken for the program's.
    assert_eq!(counters["own_rewritten"], 0, "{counters}");
    assert_eq!(counters["own_after_connect"], 0, "{counters}");
}

/// What the agent's unit and the README allow: no CAP_SYS_ADMIN.
const ONLY_DOCUMENTED: [&str; 3] = [
    "setpriv",
    "--bounding-set=-all,+bpf,+perfmon,+net_admin,+sys_ptrace",
    "--inh-caps=-all",
];

/// A static client in `cgroup`, connected to `port` on loopback and waiting.
fn waiting_client(cgroup: &TestCgroup, port: &str) -> std::process::Child {
    use std::io::BufRead;
    let mut command = std::process::Command::new(Client::StaticGlibc.path());
    command
        .args(["--wait", "127.0.0.1", port])
        .stdout(std::process::Stdio::piped());
    cgroup.enter(&mut command);
    let mut child = command.spawn().expect("the client starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().expect("piped"))
        .read_line(&mut line)
        .expect("reads");
    assert!(line.starts_with("connected"), "{line}");
    child
}

/// With only the documented capabilities, --existing still knows which connections
/// are configured already: one that another attachment configured at connect (its
/// process moved since into the target cgroup, which is how a running service is put
/// under an attachment) is left to it, so that its death is counted once; one made in
/// the target before the attach is changed, once.
#[test]
fn connections_of_other_attachments_are_theirs_without_cap_sys_admin() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let first = TestCgroup::new("existing-first");
    let target = TestCgroup::new("existing-moved-into");
    let first_path = first.0.display().to_string();
    let target_path = target.0.display().to_string();
    let attached = run_keepalive(&["cgroup", "attach", "--idle", "11", &first_path]);
    assert!(attached.status.success(), "{}", text(&attached.stderr));
    let (_listener, port) = cgroup::listener("127.0.0.1");
    let mut moved = waiting_client(&first, &port);
    std::fs::write(target.0.join("cgroup.procs"), moved.id().to_string()).expect("moves it");
    let mut native = waiting_client(&target, &port);

    let attach = |launcher: &[&str]| {
        let mut command = cli::clean(launcher[0]);
        command.args(&launcher[1..]).arg(cli::keepalive()).args([
            "cgroup",
            "attach",
            "--existing",
            "--mode",
            "force",
            "--idle",
            "31",
            &target_path,
        ]);
        let output = command.output().expect("setpriv starts");
        let stdout = text(&output.stdout);
        assert!(
            output.status.success(),
            "{:?}\n{stdout}\n{}",
            output.status,
            text(&output.stderr)
        );
        stdout
    };
    let once = attach(&ONLY_DOCUMENTED);
    assert!(
        once.contains("changed 1 of 2 connections")
            && once.contains("1 connection configured by an attachment already"),
        "{once}"
    );
    let idle = |pid: u32| tcp_socket_options(pid)[0][1];
    assert_eq!(
        idle(moved.id()),
        11,
        "left to the attachment that configured it"
    );
    assert_eq!(idle(native.id()), 31);
    let twice = attach(&ONLY_DOCUMENTED);
    assert!(
        twice.contains("changed 0 of 2 connections")
            && twice.contains("2 connections configured by an attachment already"),
        "{twice}"
    );
    for child in [&mut moved, &mut native] {
        let _ = child.kill();
        let _ = child.wait();
    }
}
