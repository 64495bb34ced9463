//! Dead connections counted by cause, against the kernel's own count. Clients in an
//! attached cgroup (a static one and a Go one for each cause) talk to a server in
//! another network namespace, which then vanishes (its link goes down: no FIN, no
//! RST). Each client's connection must end with ETIMEDOUT and add exactly 1 to the
//! counter of its cause, and the three counters together must equal what
//! TcpExtTCPAbortOnTimeout gained in the clients' namespace; before that, an orderly
//! close, a refused connect and a reset must count nothing. A connection made before
//! the attach, which `attach --existing` changed, counts as the attachment's own. `status --format
//! prometheus` shows the same counts (promtool checks it). A `keepalive --cgroup` run
//! counts too, and `status` shows it while it runs.

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

use std::time::{Duration, Instant};

use cgroup::{Client, TestCgroup};
use netns::{Bed, Proc, SERVER_V4, Side, wait_all};

/// Keepalive gives up 3 s after the last answer; the user timeout bounds connects and
/// unacknowledged data to 2 s. Force, so that Go's own 15 s timings are replaced.
const SETTINGS: [&str; 10] = [
    "--idle",
    "1",
    "--interval",
    "1",
    "--count",
    "2",
    "--user-timeout",
    "2000",
    "--mode",
    "force",
];
const START: Duration = Duration::from_secs(20);
/// Every timeout ends within its configured time plus this, on a loaded machine.
const ENDED_WITHIN: Duration = Duration::from_secs(10);
/// Ports: the server's, one per client that stays connected, and one with no listener.
const FIRST_PORT: u16 = 7301;
const RESET_PORT: u16 = 7320;
const CLOSED_PORT: u16 = 7321;

/// A client started in `cgroup`, in the clients' namespace.
fn client_in(bed: &Bed, cgroup: &TestCgroup, client: Client, label: &str, args: &[&str]) -> Proc {
    bed.spawn_in_cgroup(Side::Client, &cgroup.0, label, &client.path(), args)
}

fn abort_on_timeout(bed: &Bed) -> u64 {
    netns::parse_nstat(
        &bed.output(Side::Client, "nstat", &["-az", "TcpExtTCPAbortOnTimeout"]),
        "TcpExtTCPAbortOnTimeout",
    )
}

fn timeouts(cgroup: &TestCgroup) -> [u64; 3] {
    let entry = cgroup::status_of(&cgroup.0).expect("status lists the attachment");
    ["keepalive", "retransmission", "connect"]
        .map(|cause| entry["timeouts"][cause].as_u64().expect("a count"))
}

/// A server that resets every connection it accepts (SO_LINGER 0, then close).
const RESETTER: &str = "import socket, struct, sys
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((sys.argv[1], int(sys.argv[2])))
l.listen()
print('listening', flush=True)
while True:
    c, _ = l.accept()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    c.close()
";

#[test]
fn dead_connections_are_counted_by_cause_as_the_kernel_counts_them() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let Some(bed) = Bed::new() else { return };
    let target = TestCgroup::new("timeouts");

    let script = support::root().join("tests/support/net/server.py");
    let ports: Vec<u16> = (FIRST_PORT..FIRST_PORT + 5).collect();
    let specs: Vec<String> = ports.iter().map(|p| format!("{SERVER_V4}:{p}")).collect();
    let mut server_args = vec![script.to_str().expect("UTF-8 path")];
    server_args.extend(specs.iter().map(String::as_str));
    let mut server = bed.spawn(
        Side::Server,
        "server",
        support::python3(),
        &server_args,
        false,
        &[],
    );
    server.wait_line("listening", START);
    let reset_port = RESET_PORT.to_string();
    let mut resetter = bed.spawn(
        Side::Server,
        "resetter",
        support::python3(),
        &["-c", RESETTER, SERVER_V4, &reset_port],
        false,
        &[],
    );
    resetter.wait_line("listening", START);
    // Connected before the attach: --existing makes it the attachment's.
    let early_port = ports[4].to_string();
    let mut early = client_in(
        &bed,
        &target,
        Client::StaticGlibc,
        "connected early",
        &["--wait", SERVER_V4, &early_port],
    );
    early.wait_line("connected", START);
    let mut attach = vec!["cgroup", "attach", "--existing"];
    attach.extend(SETTINGS);
    let target_path = target.0.display().to_string();
    attach.push(&target_path);
    let attached = cli::run_keepalive(&attach);
    assert!(attached.status.success(), "{}", cli::text(&attached.stderr));
    assert!(
        cli::text(&attached.stdout).contains("changed 1 of 1 connection"),
        "{}",
        cli::text(&attached.stdout)
    );
    let before = abort_on_timeout(&bed);

    // What is not a timeout: an orderly close, a refused connect, a reset.
    let port = |p: u16| p.to_string();
    let closed = port(CLOSED_PORT);
    let first = port(FIRST_PORT);
    let mut quiet = [
        client_in(
            &bed,
            &target,
            Client::StaticGlibc,
            "closes",
            &[SERVER_V4, &first],
        ),
        client_in(
            &bed,
            &target,
            Client::StaticGlibc,
            "refused",
            &[SERVER_V4, &closed],
        ),
        client_in(
            &bed,
            &target,
            Client::Go,
            "refused (Go)",
            &[SERVER_V4, &closed],
        ),
        client_in(
            &bed,
            &target,
            Client::StaticGlibc,
            "reset",
            &["--wait", SERVER_V4, &reset_port],
        ),
        client_in(
            &bed,
            &target,
            Client::Go,
            "reset (Go)",
            &["--wait", SERVER_V4, &reset_port],
        ),
    ];
    let mut all: Vec<&mut Proc> = quiet.iter_mut().collect();
    wait_all(&mut all, Instant::now() + START);
    for proc in &mut quiet {
        assert!(
            proc.poll().is_some(),
            "{} still runs\n{}",
            proc.label,
            proc.report()
        );
    }
    let ended = |proc: &Proc, line: &str| proc.lines().iter().any(|(_, l)| l == line);
    assert!(
        ended(&quiet[1], "failed connect errno=111"),
        "{}",
        quiet[1].report()
    );
    assert!(ended(&quiet[3], "error errno=104"), "{}", quiet[3].report());
    assert_eq!(timeouts(&target), [0, 0, 0], "nothing timed out yet");
    assert_eq!(abort_on_timeout(&bed), before, "the kernel agrees");

    // One idle client and one that writes into the vanished path, of each kind.
    let ports: Vec<String> = ports[..4].iter().map(|p| p.to_string()).collect();
    let mut idle = [
        client_in(
            &bed,
            &target,
            Client::StaticGlibc,
            "idle",
            &["--wait", SERVER_V4, &ports[0]],
        ),
        client_in(
            &bed,
            &target,
            Client::Go,
            "idle (Go)",
            &["--wait", SERVER_V4, &ports[1]],
        ),
    ];
    let mut writing = [
        client_in(
            &bed,
            &target,
            Client::StaticGlibc,
            "writes",
            &["--send", "--wait", SERVER_V4, &ports[2]],
        ),
        client_in(
            &bed,
            &target,
            Client::Go,
            "writes (Go)",
            &["--send", "--wait", SERVER_V4, &ports[3]],
        ),
    ];
    for proc in idle.iter_mut().chain(writing.iter_mut()) {
        proc.wait_line("connected", START);
    }
    for port in ports.iter().chain([&early_port]) {
        server.wait_line(&format!("accepted {port}"), START);
    }

    bed.cut(Side::Server);
    let vanished = Instant::now();
    for proc in &mut writing {
        proc.send_line("go");
    }
    // Connects after the cut: their SYNs go unanswered.
    let mut connecting = [
        client_in(
            &bed,
            &target,
            Client::StaticGlibc,
            "connects",
            &[SERVER_V4, &ports[0]],
        ),
        client_in(
            &bed,
            &target,
            Client::Go,
            "connects (Go)",
            &[SERVER_V4, &ports[0]],
        ),
    ];
    let mut ending: Vec<&mut Proc> = idle
        .iter_mut()
        .chain(std::iter::once(&mut early))
        .chain(writing.iter_mut())
        .chain(connecting.iter_mut())
        .collect();
    wait_all(&mut ending, vanished + ENDED_WITHIN);
    for proc in idle
        .iter_mut()
        .chain(std::iter::once(&mut early))
        .chain(writing.iter_mut())
    {
        assert!(
            proc.poll().is_some() && ended(proc, "error errno=110"),
            "{}: no ETIMEDOUT {:?} after the cut\n{}\n{}",
            proc.label,
            vanished.elapsed(),
            proc.report(),
            bed.connections()
        );
    }
    for proc in &mut connecting {
        assert!(
            proc.poll().is_some() && ended(proc, "failed connect errno=110"),
            "{}: the connect did not time out\n{}",
            proc.label,
            proc.report()
        );
    }
    // The kernel wakes a client before the tracepoint runs: wait for the counts to
    // add up to the kernel's.
    let kernel = abort_on_timeout(&bed) - before;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut counted = timeouts(&target);
    while counted.iter().sum::<u64>() < kernel && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        counted = timeouts(&target);
    }
    assert_eq!(
        counted,
        [3, 2, 2],
        "keepalive (one connected before the attach), retransmission, connect"
    );
    assert_eq!(
        kernel,
        counted.iter().sum::<u64>(),
        "TcpExtTCPAbortOnTimeout in the clients' namespace"
    );
    println!("counted {counted:?}, as the kernel did");

    // The same counts in the Prometheus exposition, which promtool accepts.
    let exposition =
        cli::text(&cli::run_keepalive(&["cgroup", "status", "--format", "prometheus"]).stdout);
    let label = agent::relative(&target.0);
    for (cause, n) in ["keepalive", "retransmission", "connect"]
        .iter()
        .zip(counted)
    {
        let sample =
            format!("keepalive_timeouts_total{{cgroup=\"{label}\",cause=\"{cause}\"}} {n}");
        assert!(
            exposition.lines().any(|l| l == sample),
            "no {sample}:\n{exposition}"
        );
    }
    assert_eq!(agent::promtool_complaints(&exposition), "");
    server.terminate();
    resetter.terminate();
}

#[test]
fn a_run_counts_its_timeouts_and_status_shows_them_while_it_runs() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let Some(bed) = Bed::new() else { return };
    let script = support::root().join("tests/support/net/server.py");
    let spec = format!("{SERVER_V4}:{}", FIRST_PORT + 10);
    let mut server = bed.spawn(
        Side::Server,
        "server",
        support::python3(),
        &[script.to_str().expect("UTF-8 path"), &spec],
        false,
        &[],
    );
    server.wait_line("listening", START);
    let client = Client::StaticGlibc.path().display().to_string();
    let port = (FIRST_PORT + 10).to_string();
    let shell = format!(
        "cat /proc/self/cgroup; {client} --wait {SERVER_V4} {port}; echo ended; exec sleep 60"
    );
    let mut args = vec!["--cgroup"];
    args.extend(&SETTINGS[..6]);
    args.extend(["--", "sh", "-c", &shell]);
    let mut run = bed.spawn(
        Side::Client,
        "run",
        env!("CARGO_BIN_EXE_keepalive"),
        &args,
        false,
        &[],
    );
    run.wait_line("connected", START);
    let cgroup = run
        .lines()
        .iter()
        .find_map(|(_, l)| l.strip_prefix("0::/").map(str::to_string))
        .expect("the run's cgroup");
    bed.cut(Side::Server);
    run.wait_line("ended", START);
    assert!(
        run.lines().iter().any(|(_, l)| l == "error errno=110"),
        "{}",
        run.report()
    );
    let output = cli::run_keepalive(&["cgroup", "status", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let entry = list
        .as_array()
        .expect("a list")
        .iter()
        .find(|e| e["cgroup_relative"].as_str() == Some(cgroup.as_str()))
        .unwrap_or_else(|| panic!("status lists the run {cgroup}: {list:#}"));
    assert_eq!(entry["run"], true);
    assert_eq!(entry["timeouts"]["keepalive"], 1, "{entry:#}");
    assert_eq!(entry["counters"]["connections"], 1, "{entry:#}");
    let text = cli::text(&cli::run_keepalive(&["cgroup", "status"]).stdout);
    assert!(
        text.contains(&format!("{cgroup} (a `keepalive --cgroup` run)")),
        "{text}"
    );
    let prometheus =
        cli::text(&cli::run_keepalive(&["cgroup", "status", "--format", "prometheus"]).stdout);
    assert!(
        !prometheus.contains(&cgroup),
        "runs are left out:\n{prometheus}"
    );
    run.terminate();
    server.terminate();
}
