//! Filters and rules in cgroup mode, with real clients and servers: which connections
//! get keepalive, with whose settings, read back from the kernel by the programs that
//! own the sockets. Peers in another network namespace (IPv4, IPv6 and IPv4-mapped) and
//! on loopback; outbound and inbound; static and Go clients; nested attachments that
//! fall through to one another; per-rule counts of dead connections; bad input refused
//! with nothing attached.

#[path = "support/agent.rs"]
mod agent;
#[path = "support/cgroup.rs"]
mod cgroup;
#[path = "support/cli.rs"]
mod cli;
#[allow(dead_code)] // the preload tests use the rest of the test bed
#[path = "../../tests/support/netns.rs"]
mod netns;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cgroup::{Client, SystemdUnit, TestCgroup};
use netns::{Bed, Proc, SERVER_V4, SERVER_V6, Side, wait_all};

const START: Duration = Duration::from_secs(20);
/// The kernel's values in a fresh namespace: keepalive off, idle 7200 s.
const UNTOUCHED: (&str, &str) = ("0", "7200");
const MAPPED_V4: &str = "::ffff:10.213.0.2";

/// The keepalive and idle a client or server reported on its first line starting with
/// `prefix`.
fn keepalive_and_idle(proc: &mut Proc, prefix: &str) -> (String, String) {
    proc.wait_line(prefix, START);
    let line = proc
        .lines()
        .into_iter()
        .map(|(_, l)| l)
        .find(|l| l.starts_with(prefix))
        .expect("the line waited for");
    let [keepalive, idle, ..] = cgroup::options(&line);
    (keepalive, idle)
}

/// A server.py in `side`'s namespace on every HOST:PORT of `specs`.
fn servers(bed: &Bed, side: Side, specs: &[String]) -> Proc {
    let script = support::root().join("tests/support/net/server.py");
    let mut args = vec![script.to_str().expect("UTF-8 path")];
    args.extend(specs.iter().map(String::as_str));
    let mut server = bed.spawn(side, "server", support::python3(), &args, false, &[]);
    server.wait_line("listening", START);
    server
}

/// `keepalive --cgroup OPTIONS -- CLIENT HOST PORT` in the clients' namespace.
fn run_client(bed: &Bed, client: Client, options: &[&str], host: &str, port: u16) -> Proc {
    let path = client.path().display().to_string();
    let port = port.to_string();
    let mut args = vec!["--cgroup"];
    args.extend(options);
    args.extend(["--", &path, host, &port]);
    let label = format!("{client:?} {options:?} to {host} {port}");
    bed.spawn(
        Side::Client,
        &label,
        env!("CARGO_BIN_EXE_keepalive"),
        &args,
        false,
        &[],
    )
}

#[test]
fn rules_choose_by_peer_port_and_family_and_loopback_is_left_alone() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let Some(bed) = Bed::new() else { return };
    let remote: Vec<String> = [7401, 7402]
        .iter()
        .flat_map(|p| [format!("{SERVER_V4}:{p}"), format!("[{SERVER_V6}]:{p}")])
        .collect();
    let mut far = servers(&bed, Side::Server, &remote);
    let mut near = servers(
        &bed,
        Side::Client,
        &["127.0.0.1:7401".into(), "[::1]:7401".into()],
    );
    let options = [
        "--idle",
        "11",
        "--exclude-peer",
        "127.0.0.0/8,::1/128",
        "--rule",
        "name=db port=7401 idle=22",
        "--rule",
        "peer=fd00:6b61::/64 idle=33",
    ];
    let cases: [(&str, u16, (&str, &str)); 8] = [
        (SERVER_V4, 7401, ("1", "22")),
        (SERVER_V4, 7402, ("1", "11")),
        (SERVER_V6, 7401, ("1", "22")), // the first rule that matches
        (SERVER_V6, 7402, ("1", "33")),
        (MAPPED_V4, 7401, ("1", "22")),
        (MAPPED_V4, 7402, ("1", "11")), // IPv4-mapped: not in the IPv6 block
        ("127.0.0.1", 7401, UNTOUCHED),
        ("::1", 7401, UNTOUCHED),
    ];
    for (host, port, (keepalive, idle)) in cases {
        let mut client = run_client(&bed, Client::StaticGlibc, &options, host, port);
        assert_eq!(
            keepalive_and_idle(&mut client, "connected"),
            (keepalive.to_string(), idle.to_string()),
            "{}",
            client.report()
        );
    }
    // An attachment limited to IPv4 peers takes IPv4-mapped ones, not IPv6 ones.
    let ipv4_only = ["--idle", "11", "--peer", "10.213.0.0/24"];
    for (host, expected) in [
        (SERVER_V4, ("1", "11")),
        (MAPPED_V4, ("1", "11")),
        (SERVER_V6, UNTOUCHED),
    ] {
        let mut client = run_client(&bed, Client::StaticGlibc, &ipv4_only, host, 7402);
        assert_eq!(
            keepalive_and_idle(&mut client, "connected"),
            (expected.0.to_string(), expected.1.to_string()),
            "{}",
            client.report()
        );
    }
    // Go sets 15 s itself right after connect: force rewrites it on the connections
    // the filters match, and leaves it on the others.
    let go = [
        "--mode",
        "force",
        "--idle",
        "11",
        "--port",
        "7401",
        "--rule",
        "peer=fd00:6b61::/64 idle=33",
    ];
    for (host, port, idle) in [
        (SERVER_V4, 7401, "11"),
        (SERVER_V6, 7401, "33"),
        (SERVER_V4, 7402, "15"),
    ] {
        let mut client = run_client(&bed, Client::Go, &go, host, port);
        assert_eq!(
            keepalive_and_idle(&mut client, "connected").1,
            idle,
            "{}",
            client.report()
        );
    }
    far.terminate();
    near.terminate();
}

#[test]
fn inbound_and_outbound_connections_are_told_apart() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let Some(bed) = Bed::new() else { return };
    let server = cgroup::server().display().to_string();
    let client = Client::StaticGlibc.path().display().to_string();
    // (the server's options, its port, what its accepted connection gets)
    let cases: [(&[&str], u16, (&str, &str)); 4] = [
        (
            &["--idle", "44", "--direction", "in", "--port", "7411"],
            7411,
            ("1", "44"),
        ),
        (&["--idle", "44", "--direction", "out"], 7412, UNTOUCHED),
        (
            &["--idle", "44", "--direction", "in", "--port", "9"],
            7413,
            UNTOUCHED,
        ),
        (
            &[
                "--idle",
                "44",
                "--rule",
                "direction=out idle=55",
                "--rule",
                "direction=in idle=66",
            ],
            7414,
            ("1", "66"),
        ),
    ];
    for (options, port, (keepalive, idle)) in cases {
        let port = port.to_string();
        let mut args = vec!["--cgroup"];
        args.extend(options);
        args.extend(["--", &server, SERVER_V4, &port]);
        let mut accepting = bed.spawn(
            Side::Server,
            "server",
            env!("CARGO_BIN_EXE_keepalive"),
            &args,
            false,
            &[],
        );
        accepting.wait_line("listening", START);
        let mut connecting = bed.spawn(
            Side::Client,
            "client",
            &client,
            &[SERVER_V4, &port],
            false,
            &[],
        );
        assert_eq!(
            keepalive_and_idle(&mut accepting, "accepted"),
            (keepalive.to_string(), idle.to_string()),
            "{options:?}\n{}",
            accepting.report()
        );
        // The connecting side runs without keepalive: untouched.
        assert_eq!(
            keepalive_and_idle(&mut connecting, "connected"),
            (UNTOUCHED.0.to_string(), UNTOUCHED.1.to_string())
        );
        accepting.terminate();
    }
}

fn attach(cgroup: &Path, options: &[&str]) -> String {
    let path = cgroup.display().to_string();
    let mut args = vec!["cgroup", "attach"];
    args.extend(options);
    args.push(&path);
    let output = cli::run_keepalive(&args);
    let stdout = cli::text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        cli::text(&output.stderr)
    );
    stdout
}

/// The static client started in `cgroup`, connected to 127.0.0.1:`port`: its keepalive
/// and idle.
fn connect_from(cgroup: &Path, port: u16) -> (String, String) {
    let mut command = Command::new(Client::StaticGlibc.path());
    command.args(["127.0.0.1", &port.to_string()]);
    support::enter_cgroup(&mut command, cgroup);
    let [keepalive, idle, ..] = cgroup::connected(&command.output().expect("the client starts"));
    (keepalive, idle)
}

fn pair(expected: (&str, &str)) -> (String, String) {
    (expected.0.to_string(), expected.1.to_string())
}

#[test]
fn a_connection_outside_an_inner_attachments_filters_falls_through_to_the_outer() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let outer = TestCgroup::new("rules-outer");
    let inner = outer.child("inner");
    let (_first, first) = cgroup::listener("127.0.0.1");
    let (_second, second) = cgroup::listener("127.0.0.1");
    let (p1, p2): (u16, u16) = (first.parse().unwrap(), second.parse().unwrap());

    // The outer attachment for everything, the inner one for the first port only.
    attach(&outer.0, &["--idle", "11"]);
    attach(&inner.0, &["--idle", "22", "--port", &first]);
    assert_eq!(connect_from(&inner.0, p1), pair(("1", "22")));
    assert_eq!(connect_from(&inner.0, p2), pair(("1", "11")));
    assert_eq!(connect_from(&outer.0, p1), pair(("1", "11")));

    // The reverse: the outer one limited, the inner one for everything. Attaching again
    // replaces the filters in place.
    attach(&outer.0, &["--idle", "33", "--port", &first]);
    attach(&inner.0, &["--idle", "44"]);
    assert_eq!(connect_from(&inner.0, p1), pair(("1", "44")));
    assert_eq!(connect_from(&inner.0, p2), pair(("1", "44")));
    assert_eq!(connect_from(&outer.0, p1), pair(("1", "33")));
    assert_eq!(connect_from(&outer.0, p2), untouched_here());

    // Inner rules under an outer attachment without any: a rule's own settings, the
    // inner attachment's for what matches no rule, the outer's outside the inner filter.
    attach(&outer.0, &["--idle", "55"]);
    let rule = format!("name=first port={first} idle=66");
    attach(
        &inner.0,
        &[
            "--idle",
            "77",
            "--exclude-peer",
            "127.0.0.2",
            "--rule",
            &rule,
        ],
    );
    assert_eq!(connect_from(&inner.0, p1), pair(("1", "66")));
    assert_eq!(connect_from(&inner.0, p2), pair(("1", "77")));

    let entry = cgroup::status_of(&inner.0).expect("status lists the inner attachment");
    assert_eq!(
        entry["filter"]["exclude_peer"][0], "127.0.0.2/32",
        "{entry:#}"
    );
    assert_eq!(entry["rules"][0]["rule"], "first", "{entry:#}");
    assert_eq!(entry["rules"][0]["filter"]["port"][0], first.as_str());
    assert_eq!(entry["rules"][0]["idle"], 66);
    // A rule that changed starts counting afresh; the attachment's counters go on.
    assert_eq!(entry["rules"][0]["connections"], 1, "{entry:#}");
    assert_eq!(entry["counters"]["connections"], 5, "{entry:#}");
    let text = cli::text(&cli::run_keepalive(&["cgroup", "status"]).stdout);
    assert!(text.contains("  only:     not peer 127.0.0.2/32"), "{text}");
    assert!(
        text.contains(&format!("  rule first:   port {first} -> ")),
        "{text}"
    );
}

/// What a loopback connection gets with no keepalive anywhere: this namespace's sysctls.
fn untouched_here() -> (String, String) {
    ("0".to_string(), support::kernel_defaults()[0].to_string())
}

#[test]
fn dead_connections_are_counted_per_rule_in_the_prometheus_output() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let Some(bed) = Bed::new() else { return };
    let target = TestCgroup::new("rules-timeouts");
    let ports = [7421u16, 7422, 7423];
    let specs: Vec<String> = ports.iter().map(|p| format!("{SERVER_V4}:{p}")).collect();
    let mut server = servers(&bed, Side::Server, &specs);
    attach(
        &target.0,
        &[
            "--idle",
            "1",
            "--interval",
            "1",
            "--count",
            "2",
            "--mode",
            "force",
            "--rule",
            "name=db port=7421",
            "--rule",
            "port=7422 count=3",
        ],
    );
    let mut clients: Vec<Proc> = [
        (Client::StaticGlibc, 7421),
        (Client::Go, 7422),
        (Client::StaticGlibc, 7423),
    ]
    .into_iter()
    .map(|(client, port)| {
        let port = port.to_string();
        bed.spawn_in_cgroup(
            Side::Client,
            &target.0,
            &format!("{client:?} {port}"),
            &client.path(),
            &["--wait", SERVER_V4, &port],
        )
    })
    .collect();
    for (client, port) in clients.iter_mut().zip(ports) {
        client.wait_line("connected", START);
        server.wait_line(&format!("accepted {port}"), START);
    }
    bed.cut(Side::Server);
    let vanished = Instant::now();
    let mut all: Vec<&mut Proc> = clients.iter_mut().collect();
    wait_all(&mut all, vanished + Duration::from_secs(12));
    for client in &mut clients {
        assert!(
            client.lines().iter().any(|(_, l)| l == "error errno=110"),
            "no ETIMEDOUT\n{}",
            client.report()
        );
    }
    let label = agent::relative(&target.0);
    let deadline = Instant::now() + Duration::from_secs(5);
    let exposition = loop {
        let text =
            cli::text(&cli::run_keepalive(&["cgroup", "status", "--format", "prometheus"]).stdout);
        let total = format!("keepalive_timeouts_total{{cgroup=\"{label}\",cause=\"keepalive\"}} 3");
        if text.lines().any(|l| l == total) || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for sample in [
        format!("keepalive_timeouts_total{{cgroup=\"{label}\",cause=\"keepalive\"}} 3"),
        format!("keepalive_connections_total{{cgroup=\"{label}\"}} 3"),
        format!("keepalive_rule_connections_total{{cgroup=\"{label}\",rule=\"db\"}} 1"),
        format!("keepalive_rule_connections_total{{cgroup=\"{label}\",rule=\"2\"}} 1"),
        format!(
            "keepalive_rule_timeouts_total{{cgroup=\"{label}\",rule=\"db\",cause=\"keepalive\"}} 1"
        ),
        format!(
            "keepalive_rule_timeouts_total{{cgroup=\"{label}\",rule=\"2\",cause=\"keepalive\"}} 1"
        ),
        format!(
            "keepalive_rule_timeouts_total{{cgroup=\"{label}\",rule=\"2\",cause=\"connect\"}} 0"
        ),
    ] {
        assert!(
            exposition.lines().any(|l| l == sample),
            "no {sample}:\n{exposition}"
        );
    }
    assert!(
        exposition.contains(&format!(
            "keepalive_rule_info{{cgroup=\"{label}\",rule=\"2\",filter=\"port 7422\","
        )),
        "{exposition}"
    );
    assert_eq!(agent::promtool_complaints(&exposition), "");
    server.terminate();
}

#[test]
fn existing_connections_get_the_rule_they_match_and_apply_takes_filters() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let target = TestCgroup::new("rules-existing");
    let (first_listener, first) = cgroup::listener("127.0.0.1");
    let (second_listener, second) = cgroup::listener("127.0.0.1");
    // Two connections, made before any attachment, held by one process in the cgroup.
    let holder = "import socket, sys, time\n\
                  a = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n\
                  b = socket.create_connection(('127.0.0.1', int(sys.argv[2])))\n\
                  print('ready', flush=True)\n\
                  sys.stdin.read()\n";
    let mut command = Command::new(support::python3());
    command
        .args(["-c", holder, &first, &second])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    target.enter(&mut command);
    let mut child = command.spawn().expect("python3 starts");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("piped")),
        &mut line,
    )
    .expect("reads");
    assert_eq!(line.trim(), "ready");
    let _accepted = [first_listener.accept(), second_listener.accept()];
    let pid = child.id() as i32;
    let idle_to = |port: &str| -> i64 {
        let inspected = cli::inspect_json(pid);
        let process = &inspected[0];
        let socket = process["sockets"]
            .as_array()
            .expect("sockets")
            .iter()
            .find(|s| {
                s["remote"]
                    .as_str()
                    .is_some_and(|r| r.ends_with(&format!(":{port}")))
            })
            .unwrap_or_else(|| panic!("a connection to {port}: {process:#}"));
        socket["idle_s"].as_i64().expect("idle")
    };
    let default_idle = idle_to(&second);

    let rule = format!("port={first} idle=22");
    let stdout = attach(
        &target.0,
        &[
            "--existing",
            "--idle",
            "11",
            "--peer",
            "127.0.0.0/8",
            "--rule",
            &rule,
            "--port",
            &first,
        ],
    );
    assert!(
        stdout.contains("changed 1 of 2 connections")
            && stdout.contains("1 connection outside its filters"),
        "{stdout}"
    );
    assert_eq!(idle_to(&first), 22, "the rule's");
    assert_eq!(idle_to(&second), default_idle, "outside the filters");

    // apply: the second port only, outbound.
    let pid_text = pid.to_string();
    for (direction, expected) in [("in", default_idle), ("out", 33)] {
        let applied = cli::run_keepalive(&[
            "apply",
            "--idle",
            "33",
            "--port",
            &second,
            "--direction",
            direction,
            &pid_text,
        ]);
        assert!(applied.status.success(), "{}", cli::text(&applied.stderr));
        assert_eq!(idle_to(&second), expected, "--direction {direction}");
        let left = if direction == "out" {
            "1 other socket"
        } else {
            "2 other sockets"
        };
        assert!(
            cli::text(&applied.stdout).contains(&format!("{left} outside the filters")),
            "{}",
            cli::text(&applied.stdout)
        );
    }
    assert_eq!(idle_to(&first), 22, "left alone by apply");
    drop(child.stdin.take());
    let _ = child.wait();
}

#[test]
fn bad_filters_and_rules_are_refused_in_one_line_with_nothing_attached() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let target = TestCgroup::new("rules-refused");
    let scratch = support::TempDir::new("rules-refused");
    let dir = &scratch.0;
    let too_many = dir.join("too-many.toml");
    std::fs::write(&too_many, "[[rule]]\nport = 80\n".repeat(128)).expect("write");
    let bad_cidr = dir.join("bad-cidr.toml");
    std::fs::write(
        &bad_cidr,
        "[[rule]]\nport = 80\n\n[[rule]]\npeer = \"10.0.0.1/8\"\n",
    )
    .expect("write");
    let too_many = too_many.display().to_string();
    let bad_cidr = bad_cidr.display().to_string();
    let path = target.0.display().to_string();
    let cases: [(&[&str], &str); 7] = [
        (&["--peer", "10.0.0.1/8"], "did you mean 10.0.0.0/8"),
        (
            &["--rule", "name=a port=1", "--rule", "name=a port=2"],
            "rule 2: the name \"a\" is rule 1's already",
        ),
        (&["--exclude-peer", "fd00::/129"], "fd00::/129"),
        (
            &["--port", "9000-8000"],
            "backwards: the lower port comes first (8000-9000)",
        ),
        (&["--rule", "port=0"], "\"0\" is not a port from 1 to 65535"),
        (
            &["--rules", &too_many],
            "too-many.toml:255: rule 128: an attachment holds at most 127 rules",
        ),
        (
            &["--rules", &bad_cidr],
            "bad-cidr.toml:5: peer = \"10.0.0.1/8\"",
        ),
    ];
    for (options, message) in cases {
        let mut args = vec!["cgroup", "attach"];
        args.extend(options);
        args.push(&path);
        let output = cli::run_keepalive(&args);
        let stderr = cli::text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{options:?}: {stderr}");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(first.contains(message), "{options:?}: {stderr}");
        assert!(
            cgroup::status_of(&target.0).is_none(),
            "{options:?} attached"
        );
    }
    // The limit itself is accepted.
    let most = dir.join("most.toml");
    let rules: String = (1..=127)
        .map(|i| {
            format!(
                "[[rule]]\nname = \"r{i}\"\nport = {}\nidle = {i}\n",
                1000 + i
            )
        })
        .collect();
    std::fs::write(&most, rules).expect("write");
    attach(&target.0, &["--rules", &most.display().to_string()]);
    let entry = cgroup::status_of(&target.0).expect("attached");
    assert_eq!(entry["rules"].as_array().map(Vec::len), Some(127));
    assert_eq!(entry["rules"][126]["rule"], "r127");
    assert_eq!(entry["rules"][126]["filter"]["port"][0], "1127");

    // Preload mode refuses filters: the library acts before any address is known.
    let output = cli::run_keepalive(&["--port", "5432", "--", "true"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = cli::text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--port needs --cgroup"), "{stderr}");
}

#[test]
fn pinned_programs_carry_their_rules_for_systemd() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let cgroup = TestCgroup::new("rules-pin");
    let unit = SystemdUnit::attach(
        &cgroup.0,
        &["--idle", "60", "--rule", "peer=127.0.0.1 idle=61"],
    );
    assert!(unit.printed.contains("1 rule"), "{}", unit.printed);
    let got = cgroup::client_in(&cgroup, &[]);
    assert_eq!(&got[..2], ["1", "61"], "the rule's idle: {got:?}");
}

/// A rules file of `rules` ([[rule]] tables, without the header).
fn rules_file(dir: &Path, name: &str, rules: &[String]) -> String {
    let path = dir.join(name);
    let text: String = rules.iter().map(|r| format!("[[rule]]\n{r}\n")).collect();
    std::fs::write(&path, text).expect("write the rules");
    path.display().to_string()
}

/// `count` single addresses in 172.`second`.0.0/16, as a TOML list.
fn addresses(second: u8, count: usize) -> String {
    let list: Vec<String> = (0..count)
        .map(|i| format!("\"172.{second}.{}.{}\"", i / 250, i % 250 + 1))
        .collect();
    format!("[{}]", list.join(", "))
}

fn rule_connections(cgroup: &Path) -> Vec<(String, u64)> {
    let entry = cgroup::status_of(cgroup).expect("attached");
    entry["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| {
            let label = r["rule"].as_str().expect("a label").to_string();
            (label, r["connections"].as_u64().expect("a count"))
        })
        .collect()
}

#[test]
fn other_rules_replace_the_programs_even_near_the_limit_and_counts_follow_their_rules() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let target = TestCgroup::new("rules-replace");
    let scratch = support::TempDir::new("rules-replace");
    let dir = &scratch.0;
    let (_first, first) = cgroup::listener("127.0.0.1");
    let (_second, second) = cgroup::listener("127.0.0.1");
    let (p1, p2): (u16, u16) = (first.parse().unwrap(), second.parse().unwrap());
    let db = format!("name = \"db\"\nport = {first}\nidle = 21");
    let web = format!("name = \"web\"\nport = {second}\nidle = 22");
    // 4000 addresses each: the two rule sets together would not fit in one trie.
    let before = rules_file(
        dir,
        "before.toml",
        &[
            db.clone(),
            web.clone(),
            format!("name = \"a\"\npeer = {}\nidle = 5", addresses(16, 4000)),
        ],
    );
    attach(&target.0, &["--idle", "500", "--rules", &before]);
    for _ in 0..3 {
        assert_eq!(connect_from(&target.0, p1), pair(("1", "21")));
    }
    assert_eq!(connect_from(&target.0, p2), pair(("1", "22")));
    assert_eq!(
        rule_connections(&target.0),
        [("db".into(), 3), ("web".into(), 1), ("a".into(), 0)]
    );

    // Reordered, one replaced, one added: each keeps its own count, under its name.
    let after = rules_file(
        dir,
        "after.toml",
        &[
            web,
            db,
            format!("name = \"b\"\npeer = {}\nidle = 6", addresses(20, 4000)),
            "name = \"new\"\nport = 9\nidle = 7".to_string(),
        ],
    );
    attach(&target.0, &["--idle", "500", "--rules", &after]);
    assert_eq!(
        rule_connections(&target.0),
        [
            ("web".into(), 1),
            ("db".into(), 3),
            ("b".into(), 0),
            ("new".into(), 0)
        ]
    );
    assert_eq!(connect_from(&target.0, p1), pair(("1", "21")));
    let entry = cgroup::status_of(&target.0).expect("attached");
    assert_eq!(
        entry["counters"]["connections"], 5,
        "carried over: {entry:#}"
    );
    assert_eq!(entry["rules"][1]["connections"], 4, "{entry:#}");
}

/// The static client connected to 127.0.0.1:`port` from `cgroup`, waiting to set
/// idle=999 itself when told (--then): what it got at connect, and after.
struct Waiting {
    child: std::process::Child,
    out: std::io::BufReader<std::process::ChildStdout>,
    /// The idle it reported once connected.
    idle: String,
}

impl Waiting {
    fn connect(cgroup: &Path, port: &str) -> Waiting {
        let mut command = Command::new(Client::StaticGlibc.path());
        command
            .args(["--then", "idle=999", "127.0.0.1", port])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        support::enter_cgroup(&mut command, cgroup);
        let mut child = command.spawn().expect("the client starts");
        let out = std::io::BufReader::new(child.stdout.take().expect("piped"));
        let mut waiting = Waiting {
            child,
            out,
            idle: String::new(),
        };
        waiting.idle = waiting.next_idle("connected");
        waiting
    }

    /// Tells it to set idle=999, and returns the idle the kernel then holds.
    fn then(mut self) -> String {
        drop(self.child.stdin.take());
        let idle = self.next_idle("then");
        let _ = self.child.wait();
        idle
    }

    fn next_idle(&mut self, prefix: &str) -> String {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut self.out, &mut line).expect("reads");
        assert!(line.starts_with(prefix), "{line}");
        cgroup::options(&line)[1].clone()
    }
}

#[test]
fn a_connection_whose_rule_is_gone_is_not_held_to_it() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let target = TestCgroup::new("rules-gone");
    let (_listener, port) = cgroup::listener("127.0.0.1");
    let web = format!("name=web port={port} idle=52 mode=force");
    attach(
        &target.0,
        &[
            "--idle",
            "500",
            "--rule",
            "name=db port=9 idle=51",
            "--rule",
            &web,
        ],
    );
    let client = Waiting::connect(&target.0, &port);
    assert_eq!(client.idle, "52");
    // The rule goes; the connection keeps what it got, and the program's own call
    // after that is its own, not forced back to the rule that is gone.
    attach(
        &target.0,
        &["--idle", "500", "--rule", "name=db port=9 idle=51"],
    );
    assert_eq!(client.then(), "999", "the program's own");
}

#[test]
fn a_socket_decided_outside_the_filters_stays_outside_on_its_next_connect() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let outer = TestCgroup::new("rules-retry-outer");
    let inner = outer.child("inner");
    let (_listener, port) = cgroup::listener("127.0.0.1");
    // A port nothing listens on: the first connect is refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let closed_port = closed.local_addr().expect("an address").port().to_string();
    drop(closed);
    attach(&outer.0, &["--idle", "11"]);
    attach(&inner.0, &["--idle", "22", "--port", &port]);
    let retry = "import socket, sys\n\
                 s = socket.socket()\n\
                 try:\n    s.connect(('127.0.0.1', int(sys.argv[1])))\nexcept OSError:\n    pass\n\
                 s.connect(('127.0.0.1', int(sys.argv[2])))\n\
                 print(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE))\n";
    let mut command = Command::new(support::python3());
    command.args(["-c", retry, &closed_port, &port]);
    support::enter_cgroup(&mut command, &inner.0);
    let output = command.output().expect("python3 starts");
    assert!(output.status.success(), "{}", cli::text(&output.stderr));
    // The first connect was outside the inner filters: the outer attachment took the
    // socket, and keeps it, rather than have it change hands midway (as an MPTCP
    // connection's later subflow to another address would).
    assert_eq!(cli::text(&output.stdout).trim(), "11");
    let entry = cgroup::status_of(&inner.0).expect("attached");
    assert_eq!(entry["counters"]["connections"], 0, "{entry:#}");
}

#[test]
fn settings_alone_change_in_place_and_counts_stay_under_their_labels() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let target = TestCgroup::new("rules-labels");
    let (_first, first) = cgroup::listener("127.0.0.1");
    let (_second, second) = cgroup::listener("127.0.0.1");
    let (p1, p2): (u16, u16) = (first.parse().unwrap(), second.parse().unwrap());
    let db = format!("name=db port={first} count=3");
    attach(&target.0, &["--idle", "600", "--rule", &db]);
    let ids = agent::attached_ids(&target.0);
    assert_eq!(connect_from(&target.0, p1), pair(("1", "600")));
    // The attachment's idle, which the rule takes: the same programs, the same counts,
    // the new idle for the rule too.
    attach(&target.0, &["--idle", "700", "--rule", &db]);
    assert_eq!(agent::attached_ids(&target.0), ids, "changed in place");
    assert_eq!(rule_connections(&target.0), [("db".into(), 1)]);
    assert_eq!(connect_from(&target.0, p1), pair(("1", "700")));

    // Unnamed rules are labelled by their place: reordered, their counts start again
    // rather than move to the other rule's label. A named rule keeps its own.
    let one = format!("port={first} idle=51");
    let two = format!("port={second} idle=52");
    attach(
        &target.0,
        &[
            "--idle", "700", "--rule", &one, "--rule", &two, "--rule", &db,
        ],
    );
    assert_eq!(connect_from(&target.0, p1), pair(("1", "51")));
    assert_eq!(connect_from(&target.0, p1), pair(("1", "51")));
    assert_eq!(
        rule_connections(&target.0),
        [("1".into(), 2), ("2".into(), 0), ("db".into(), 2)]
    );
    let moved_db = format!("name=db port={second}");
    attach(
        &target.0,
        &[
            "--idle", "700", "--rule", &two, "--rule", &one, "--rule", &moved_db,
        ],
    );
    assert_eq!(
        rule_connections(&target.0),
        [("1".into(), 0), ("2".into(), 0), ("db".into(), 2)]
    );
    assert_eq!(connect_from(&target.0, p2), pair(("1", "52")));
}

#[test]
fn an_inner_attachment_replaced_adopts_its_open_connections_again() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let outer = TestCgroup::new("rules-adopt-outer");
    let inner = outer.child("inner");
    let (_listener, port) = cgroup::listener("127.0.0.1");
    attach(&outer.0, &["--idle", "100"]);
    let rule = |idle: u16| format!("name=db port={port} idle={idle}");
    attach(
        &inner.0,
        &["--mode", "force", "--idle", "500", "--rule", &rule(51)],
    );
    let client = Waiting::connect(&inner.0, &port);
    assert_eq!(client.idle, "51");
    // Another filter: fresh programs, which adopt the open connection (the outer
    // attachment's note that an inner one claimed it does not stand in the way).
    let rule61 = format!("{} peer=127.0.0.0/8", rule(61));
    let stdout = attach(
        &inner.0,
        &[
            "--existing",
            "--mode",
            "force",
            "--idle",
            "500",
            "--rule",
            &rule61,
        ],
    );
    assert!(stdout.contains("changed 1 of 1 connection"), "{stdout}");
    assert_eq!(client.then(), "61", "forced by the new rule");
}

#[test]
fn an_outer_attachment_adopts_the_connections_of_an_inner_one_detached() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let outer = TestCgroup::new("rules-detached-outer");
    let inner = outer.child("inner");
    let (_listener, port) = cgroup::listener("127.0.0.1");
    attach(&outer.0, &["--mode", "force", "--idle", "100"]);
    let rule = format!("name=db port={port} idle=61");
    attach(
        &inner.0,
        &["--mode", "force", "--idle", "500", "--rule", &rule],
    );
    let client = Waiting::connect(&inner.0, &port);
    assert_eq!(client.idle, "61");
    let detached = cli::run_keepalive(&["cgroup", "detach", &inner.0.display().to_string()]);
    assert!(detached.status.success(), "{}", cli::text(&detached.stderr));
    // Nobody follows it now: the outer attachment's --existing takes it.
    let stdout = attach(
        &outer.0,
        &["--existing", "--mode", "force", "--idle", "100"],
    );
    assert!(stdout.contains("changed 1 of 1 connection"), "{stdout}");
    assert_eq!(client.then(), "100", "forced by the outer");
}
