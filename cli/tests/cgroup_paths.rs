//! Cgroup mode against preload mode on the same program. Preload mode is the reference:
//! `keepalive --cgroup` must leave a program's sockets with what `keepalive` (the
//! preloaded library) leaves them with, for the same options, whichever path the
//! program's own settings take: before or after connect, with a value over a page,
//! refused by the kernel, on an MPTCP socket, on a connection made before `cgroup
//! attach`, and with `--user-timeout auto` following the program's timings.
//!
//! Each scenario runs the dynamically linked test client (tests/support/cgroup/client.c)
//! once each way and compares the five values it reads back with getsockopt, and both
//! with the value the scenario calls for. A test reports every scenario that differs,
//! with both modes' values, before it fails.

#[path = "support/cgroup.rs"]
mod cgroup;
#[path = "support/cli.rs"]
mod cli;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cgroup::{Client, TestCgroup};
use cli::{TIMING_OPTIONS, keepalive_command, text};

/// What TIMING_OPTIONS give a connection: keepalive, idle, intvl, cnt, user timeout.
const CONFIGURED: [&str; 5] = ["1", "7", "3", "4", "9000"];

/// The options a program sets itself in the regression scenarios.
const OWN: &str = "keepalive=0,idle=20,user_timeout=5000";

/// What the program gets under `on` and `skip` when it sets OWN itself.
const OWN_KEPT: [&str; 5] = ["0", "20", "3", "4", "5000"];

const IPPROTO_TCP: libc::c_int = libc::IPPROTO_TCP;
const IPPROTO_MPTCP: libc::c_int = 262;

/// The kernel's idle, interval and count for a socket nobody configured, here.
fn kernel_timings() -> [String; 3] {
    support::kernel_defaults().map(|v| v.to_string())
}

/// How a program is run under keepalive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// `keepalive OPTIONS -- PROGRAM`: LD_PRELOAD.
    Preload,
    /// `keepalive --cgroup OPTIONS -- PROGRAM`: the BPF programs.
    Cgroup,
}

/// A loopback listener of `protocol` (TCP or MPTCP) on 127.0.0.1; the kernel completes
/// the handshakes in its backlog, so nothing needs to accept. Closed when dropped.
struct Listener {
    _fd: OwnedFd,
    port: String,
}

impl Listener {
    fn new(protocol: libc::c_int) -> Listener {
        // SAFETY: socket has no memory preconditions.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, protocol) };
        assert!(
            fd >= 0,
            "socket(AF_INET, SOCK_STREAM, {protocol}): {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fd is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_in is plain data, valid all zero.
        let mut address: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        address.sin_family = libc::AF_INET as libc::sa_family_t;
        address.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let address_ptr = (&raw mut address).cast::<libc::sockaddr>();
        // SAFETY: address_ptr points to a sockaddr_in of `len` bytes, which bind reads
        // and getsockname writes; fd is open.
        let ok = unsafe {
            libc::bind(fd.as_raw_fd(), address_ptr, len) == 0
                && libc::listen(fd.as_raw_fd(), 64) == 0
                && libc::getsockname(fd.as_raw_fd(), address_ptr, &mut len) == 0
        };
        assert!(
            ok,
            "listen on 127.0.0.1: {}",
            std::io::Error::last_os_error()
        );
        Listener {
            _fd: fd,
            port: u16::from_be(address.sin_port).to_string(),
        }
    }
}

/// `keepalive [--cgroup] OPTIONS -- CLIENT CLIENT_ARGS 127.0.0.1 PORT`.
fn client_command(
    way: Way,
    options: &[&str],
    client: Client,
    client_args: &[&str],
    port: &str,
) -> Command {
    let mut args = Vec::new();
    if way == Way::Cgroup {
        args.push("--cgroup");
    }
    args.extend_from_slice(options);
    let mut command = keepalive_command(&args);
    command
        .arg("--")
        .arg(client.path())
        .args(client_args)
        .args(["127.0.0.1", port]);
    command
}

/// What one run of the client printed: the values on its last report line (`connected`,
/// or `then` after --then), and all of its output.
#[derive(Debug)]
struct Run {
    values: [String; 5],
    stdout: String,
}

/// Runs the client to its end, against a fresh listener of `protocol`; `Err` (with its
/// output) when it did not connect and report.
fn run(
    way: Way,
    options: &[&str],
    client: Client,
    client_args: &[&str],
    protocol: libc::c_int,
) -> Result<Run, String> {
    let listener = Listener::new(protocol);
    let output = client_command(way, options, client, client_args, &listener.port)
        .output()
        .expect("keepalive starts");
    let stdout = text(&output.stdout);
    let report = stdout
        .lines()
        .rfind(|l| l.starts_with("connected ") || l.starts_with("then "));
    match report {
        Some(line) if output.status.success() => Ok(Run {
            values: cgroup::options(line),
            stdout,
        }),
        _ => Err(format!(
            "{:?}: {} {}",
            output.status,
            stdout.trim(),
            text(&output.stderr).trim()
        )),
    }
}

/// The scenarios of one test that went wrong, said all together when the test ends.
#[derive(Default)]
struct Findings(Vec<String>);

impl Findings {
    /// Compares the two modes' results with each other and with `expected`.
    fn compare(
        &mut self,
        scenario: &str,
        expected: &[String; 5],
        preload: &Result<[String; 5], String>,
        cgroup: &Result<[String; 5], String>,
    ) {
        let matches = |got: &Result<[String; 5], String>| got.as_ref().is_ok_and(|v| v == expected);
        if !matches(preload) || !matches(cgroup) {
            self.0.push(format!(
                "{scenario}: expected {expected:?}\n    preload mode: {}\n    cgroup mode:  {}",
                shown(preload),
                shown(cgroup)
            ));
        }
    }

    /// Checks one mode's result alone (clients that preload mode cannot reach).
    fn check(&mut self, scenario: &str, expected: &[String; 5], got: &Result<[String; 5], String>) {
        if got.as_ref().is_ok_and(|v| v == expected) {
            return;
        }
        self.0.push(format!(
            "{scenario}: expected {expected:?}\n    cgroup mode:  {}",
            shown(got)
        ));
    }

    fn note(&mut self, finding: String) {
        self.0.push(finding);
    }

    fn finish(self) {
        assert!(
            self.0.is_empty(),
            "{} scenario(s) differ:\n{}",
            self.0.len(),
            self.0.join("\n")
        );
    }
}

fn shown(got: &Result<[String; 5], String>) -> String {
    match got {
        Ok(values) => format!("{values:?}"),
        Err(failure) => format!("client failed: {failure}"),
    }
}

fn values(run: &Result<Run, String>) -> Result<[String; 5], String> {
    run.as_ref().map(|r| r.values.clone()).map_err(Clone::clone)
}

fn strings(values: [&str; 5]) -> [String; 5] {
    values.map(String::from)
}

/// Runs the dynamic client both ways on TCP and compares the values with `expected`.
fn both(
    findings: &mut Findings,
    scenario: &str,
    options: &[&str],
    client_args: &[&str],
    expected: &[String; 5],
) {
    let _runs = both_runs(findings, scenario, options, client_args, expected);
}

/// [`both`], returning the two runs: preload mode's, then cgroup mode's.
fn both_runs(
    findings: &mut Findings,
    scenario: &str,
    options: &[&str],
    client_args: &[&str],
    expected: &[String; 5],
) -> (Result<Run, String>, Result<Run, String>) {
    let preload = run(
        Way::Preload,
        options,
        Client::Dynamic,
        client_args,
        IPPROTO_TCP,
    );
    let cgroup = run(
        Way::Cgroup,
        options,
        Client::Dynamic,
        client_args,
        IPPROTO_TCP,
    );
    findings.compare(scenario, expected, &values(&preload), &values(&cgroup));
    (preload, cgroup)
}

/// TIMING_OPTIONS, then `extra`.
fn timing_options<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    [&TIMING_OPTIONS[..], extra].concat()
}

// Items 7 and 8: `--user-timeout auto` follows the program's timings, as preload mode does.

#[test]
fn force_with_auto_user_timeout_follows_an_interval_the_program_sets() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let mut findings = Findings::default();
    let [_, _, count] = kernel_timings();
    let expected_ms = ((60 + 5 * count.parse::<i64>().expect("a number")) * 1000).to_string();
    let expected = strings(["1", "60", "5", &count, &expected_ms]);
    let options = ["--mode", "force", "--idle", "60", "--user-timeout", "auto"];
    for when in ["--before", "--after"] {
        both(
            &mut findings,
            &format!("force, idle 60, auto; program sets intvl=5 {when} connect"),
            &options,
            &[when, "intvl=5"],
            &expected,
        );
    }
    // Under `on` too, and with a count the program sets besides.
    let expected = strings(["1", "60", "5", "2", "70000"]);
    both(
        &mut findings,
        "on, idle 60, auto; program sets intvl=5 before and cnt=2 after connect",
        &["--idle", "60", "--user-timeout", "auto"],
        &["--before", "intvl=5", "--after", "cnt=2"],
        &expected,
    );
    findings.finish();
}

#[test]
fn auto_keeps_a_user_timeout_the_program_set_on_a_connection_made_after_the_attach() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let mut findings = Findings::default();
    let [_, intvl, cnt] = kernel_timings();
    let expected = strings(["1", "10", &intvl, &cnt, "5000"]);
    let options = ["--user-timeout", "auto"];
    both(
        &mut findings,
        "auto; program sets user_timeout=5000 before connect, idle=10 after",
        &options,
        &["--before", "user_timeout=5000", "--after", "idle=10"],
        &expected,
    );
    both(
        &mut findings,
        "auto; program sets user_timeout=5000 after connect, then idle=10",
        &options,
        &["--after", "user_timeout=5000", "--then", "idle=10"],
        &expected,
    );
    findings.finish();
}

/// Reads the client's next line, failing the test if it ends first.
fn next_line(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    child: &mut Child,
) -> String {
    match lines.next() {
        Some(Ok(line)) => line,
        _ => panic!("the client ended early: {:?}", child.try_wait()),
    }
}

#[test]
fn auto_keeps_a_user_timeout_the_program_set_on_a_connection_made_before_the_attach() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let mut findings = Findings::default();
    let [_, intvl, cnt] = kernel_timings();
    // The program turns keepalive on itself, so that the five values can be compared:
    // a connection made before the attach gets nothing from keepalive.
    let client_args = [
        "--after",
        "keepalive=1,user_timeout=5000",
        "--then",
        "idle=10",
    ];
    let expected = strings(["1", "10", &intvl, &cnt, "5000"]);

    // Preload mode: the same steps, nothing to wait for in between (stdin is empty).
    let preload = run(
        Way::Preload,
        &["--user-timeout", "auto"],
        Client::Dynamic,
        &client_args,
        IPPROTO_TCP,
    );

    // Cgroup mode: the client connects in a cgroup with nothing attached, sets its user
    // timeout, and waits; `cgroup attach` comes; then the client sets its idle time.
    let test_cgroup = TestCgroup::new("before-attach");
    let listener = Listener::new(IPPROTO_TCP);
    let mut command = support::command(Client::Dynamic.path(), None, &[]);
    command
        .args(client_args)
        .args(["127.0.0.1", &listener.port])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    test_cgroup.enter(&mut command);
    let mut child = command.spawn().expect("the client starts");
    let mut stdin = child.stdin.take().expect("piped");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let connected = next_line(&mut lines, &mut child);
    let dir = test_cgroup.0.display().to_string();
    let attach = keepalive_command(&["cgroup", "attach", "--user-timeout", "auto", &dir])
        .output()
        .expect("keepalive starts");
    assert!(attach.status.success(), "{}", text(&attach.stderr));
    writeln!(stdin, "go").expect("write to the client");
    drop(stdin);
    let then = next_line(&mut lines, &mut child);
    assert!(child.wait().expect("the client ends").success());
    assert!(
        connected.starts_with("connected ") && then.starts_with("then "),
        "{connected}\n{then}"
    );
    findings.compare(
        "auto attached after connect; program set user_timeout=5000 before the attach, \
         idle=10 after it",
        &expected,
        &values(&preload),
        &Ok(cgroup::options(&then)),
    );
    drop(test_cgroup);
    findings.finish();
}

// Item 9: a value passed in a buffer over a page.

#[test]
fn values_passed_with_optlen_over_a_page_are_the_programs_own_or_rewritten() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let mut findings = Findings::default();
    let own = strings(["0", "15", "3", "4", "9000"]);
    let configured = strings(CONFIGURED);
    for optlen in ["8192", "4097", "4096"] {
        for (mode, when, spec, expected) in [
            (
                "on",
                "--before",
                "keepalive=0",
                ["0", "7", "3", "4", "9000"],
            ),
            (
                "on",
                "--after",
                "keepalive=0,idle=15",
                ["0", "15", "3", "4", "9000"],
            ),
            ("force", "--after", "idle=15", CONFIGURED),
            ("force", "--before", "keepalive=0,idle=15", CONFIGURED),
            ("force", "--after", "keepalive=0,idle=15", CONFIGURED),
        ] {
            both(
                &mut findings,
                &format!("{mode}; program sets {spec} {when} connect with optlen {optlen}"),
                &timing_options(&["--mode", mode]),
                &["--optlen", optlen, when, spec],
                &strings(expected),
            );
        }
    }
    // Longer than an int but within a page: the ordinary path.
    both(
        &mut findings,
        "on; program sets keepalive=0,idle=15 before connect with optlen 8",
        &timing_options(&[]),
        &["--optlen", "8", "--before", "keepalive=0,idle=15"],
        &own,
    );
    both(
        &mut findings,
        "force; program sets idle=15 after connect with optlen 8",
        &timing_options(&["--mode", "force"]),
        &["--optlen", "8", "--after", "idle=15"],
        &configured,
    );
    findings.finish();
}

// Item 10: a call the kernel refuses is not the program's own setting.

#[test]
fn a_setsockopt_the_kernel_refuses_leaves_the_configured_values() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let mut findings = Findings::default();
    let configured = strings(CONFIGURED);
    let all_bad = "idle=0,intvl=0,cnt=0,user_timeout=-1";
    for (mode, when, spec) in [
        ("on", "--before", "idle=0"),
        ("force", "--before", "idle=0"),
        ("skip", "--before", "idle=0"),
        ("on", "--before", all_bad),
        ("force", "--before", all_bad),
        ("on", "--after", all_bad),
        ("force", "--after", all_bad),
    ] {
        let scenario = format!("{mode}; program sets {spec} {when} connect (EINVAL)");
        let mut expected = configured.clone();
        if mode == "skip" {
            expected[0] = "0".into();
        }
        let (preload, cgroup) = both_runs(
            &mut findings,
            &scenario,
            &timing_options(&["--mode", mode]),
            &["--keep-going", when, spec],
            &expected,
        );
        // The program's own call still fails, in both modes (force never makes it work).
        let refused = spec.split(',').count();
        for (way, got) in [(Way::Preload, &preload), (Way::Cgroup, &cgroup)] {
            let Ok(got) = got else { continue };
            let count = got
                .stdout
                .lines()
                .filter(|l| l.starts_with("refused ") && l.ends_with(" errno=22"))
                .count();
            if count != refused {
                findings.note(format!(
                    "{scenario}: {way:?} mode: {count} of {refused} calls refused with EINVAL:\n{}",
                    got.stdout
                ));
            }
        }
    }
    findings.finish();
}

// Regression: the program's own values before and after connect under on, skip, force.

/// What Go's net package sets itself right after connect (Go 1.19, Debian 12's).
const GO_AFTER_CONNECT: &str = "keepalive=1,idle=15,intvl=15";

#[test]
fn own_settings_before_and_after_connect_under_on_skip_and_force() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let mut findings = Findings::default();
    for mode in ["on", "skip", "force"] {
        let options = timing_options(&["--mode", mode]);
        let expected = strings(if mode == "force" {
            CONFIGURED
        } else {
            OWN_KEPT
        });
        for when in ["--before", "--after"] {
            let scenario = format!("{mode}; program sets {OWN} {when} connect");
            both(&mut findings, &scenario, &options, &[when, OWN], &expected);
            // Programs preload mode cannot reach: cgroup mode alone, the same values.
            for client in [Client::StaticGlibc, Client::StaticMusl] {
                let got = run(Way::Cgroup, &options, client, &[when, OWN], IPPROTO_TCP);
                findings.check(&format!("{scenario}, {client:?}"), &expected, &values(&got));
            }
            // Go sets its own values after connect, after a --before SPEC and before an
            // --after one: the dynamic C client doing the same under preload mode is
            // what the Go client must get under cgroup mode.
            let go_then_own = format!("{GO_AFTER_CONNECT},{OWN}");
            let equivalent = match when {
                "--before" => vec!["--before", OWN, "--after", GO_AFTER_CONNECT],
                _ => vec!["--after", &go_then_own],
            };
            let reference = run(
                Way::Preload,
                &options,
                Client::Dynamic,
                &equivalent,
                IPPROTO_TCP,
            );
            let go = run(Way::Cgroup, &options, Client::Go, &[when, OWN], IPPROTO_TCP);
            findings.compare(
                &format!("{scenario}, Go (preload: the C client with {equivalent:?})"),
                &values(&reference).unwrap_or_else(|e| panic!("{e}")),
                &values(&reference),
                &values(&go),
            );
        }
    }
    // No own settings at all, and skip with none: the configured values, SO_KEEPALIVE
    // left to the program under skip.
    both(
        &mut findings,
        "on; nothing of its own",
        &timing_options(&[]),
        &[],
        &strings(CONFIGURED),
    );
    both(
        &mut findings,
        "skip; nothing of its own",
        &timing_options(&["--mode", "skip"]),
        &[],
        &strings(["0", "7", "3", "4", "9000"]),
    );
    findings.finish();
}

// Item 6: MPTCP. The program's getsockopt on its MPTCP socket is what the program sees;
// the subflow (a TCP socket of the kernel's, with no descriptor) is what the network
// sees: its keepalive timer, read with `ss -o` right after connect, tells its idle time.

/// Timings whose idle (300 s) is far from the program's own 15 s, so that the subflow's
/// keepalive timer tells one from the other.
const MPTCP_OPTIONS: [&str; 8] = [
    "--idle",
    "300",
    "--interval",
    "3",
    "--count",
    "4",
    "--user-timeout",
    "9s",
];

fn require_mptcp() -> bool {
    let enabled =
        std::fs::read_to_string("/proc/sys/net/mptcp/enabled").is_ok_and(|v| v.trim() == "1");
    support::require(enabled, "MPTCP is not enabled (sysctl net.mptcp.enabled)")
}

/// An `ss -o` timer such as `4min59sec`, `14sec`, `6.900ms` (6.9 s) or `900ms`, in
/// seconds.
fn timer_seconds(timer: &str) -> Option<f64> {
    let (minutes, rest) = match timer.split_once("min") {
        Some((minutes, rest)) => (minutes.parse::<f64>().ok()?, rest),
        None => (0.0, timer),
    };
    let seconds = if let Some(seconds) = rest.strip_suffix("sec") {
        seconds.parse::<f64>().ok()?
    } else if let Some(ms) = rest.strip_suffix("ms") {
        match ms.split_once('.') {
            Some((seconds, ms)) => seconds.parse::<f64>().ok()? + ms.parse::<f64>().ok()? / 1000.0,
            None => ms.parse::<f64>().ok()? / 1000.0,
        }
    } else if rest.is_empty() {
        0.0
    } else {
        return None;
    };
    Some(minutes * 60.0 + seconds)
}

/// The keepalive timer of the one TCP socket (an MPTCP subflow) connected to `port`.
fn subflow_keepalive_timer(port: &str) -> Result<f64, String> {
    let output = Command::new("ss")
        .args(["-tnoH", "dport", "=", &format!(":{port}")])
        .output()
        .expect("ss (package iproute2) runs");
    let listing = text(&output.stdout);
    let sockets: Vec<&str> = listing.lines().filter(|l| !l.trim().is_empty()).collect();
    let [socket] = sockets[..] else {
        return Err(format!("not one socket to port {port}: {listing}"));
    };
    socket
        .split_once("timer:(keepalive,")
        .and_then(|(_, rest)| timer_seconds(rest.split(',').next()?))
        .ok_or_else(|| format!("no keepalive timer: {socket}"))
}

/// One MPTCP run: what the program read back, and the subflow's keepalive timer.
struct MptcpRun {
    values: Result<[String; 5], String>,
    timer: Result<f64, String>,
}

/// Runs the dynamic client with --mptcp --wait against an MPTCP listener, reads the
/// subflow's timer while it waits, then ends it.
fn run_mptcp(way: Way, options: &[&str], client_args: &[&str]) -> MptcpRun {
    let listener = Listener::new(IPPROTO_MPTCP);
    let args = [&["--mptcp", "--wait"], client_args].concat();
    let mut child = client_command(way, options, Client::Dynamic, &args, &listener.port)
        .stdout(Stdio::piped())
        .spawn()
        .expect("keepalive starts");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let result = if first.starts_with("connected ") {
        MptcpRun {
            values: Ok(cgroup::options(&first)),
            timer: subflow_keepalive_timer(&listener.port),
        }
    } else {
        MptcpRun {
            values: Err(first.clone()),
            timer: Err(first),
        }
    };
    end(&mut child);
    result
}

/// Ends `child` with SIGTERM (which `keepalive --cgroup` passes on to the client) and
/// reaps it; kills it if it is still there after 5 s.
fn end(child: &mut Child) {
    // SAFETY: kill has no memory preconditions; the child is not reaped yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Where the subflow's timer says its idle time is: near `idle` seconds (just after
/// connect the timer is a little under it).
fn timer_near(timer: &Result<f64, String>, idle: f64) -> bool {
    timer
        .as_ref()
        .is_ok_and(|&seconds| seconds <= idle + 0.5 && seconds >= idle - 5.0)
}

/// What an MPTCP scenario checks: the subflow's timer always, and the idle time the
/// program reads back from its MPTCP socket too, except where cgroup mode cannot make
/// that socket show it (README, Limits: BPF can set options on the subflows, which
/// carry the keepalive, but not on the MPTCP socket's own copies).
#[derive(PartialEq)]
enum Check {
    ReadBackAndSubflow,
    SubflowOnly,
}

/// Runs one MPTCP scenario both ways; checks the subflow's timer (and, as `check`
/// says, the idle time the program reads back) against `idle`.
fn mptcp_scenario(
    findings: &mut Findings,
    scenario: &str,
    mode: &str,
    client_args: &[&str],
    idle: &str,
    check: Check,
) -> (MptcpRun, MptcpRun) {
    let options = [&MPTCP_OPTIONS[..], &["--mode", mode]].concat();
    let preload = run_mptcp(Way::Preload, &options, client_args);
    let cgroup = run_mptcp(Way::Cgroup, &options, client_args);
    let idle_read = |run: &MptcpRun| run.values.as_ref().map(|v| v[1].clone()).ok();
    let read_back_differs = check == Check::ReadBackAndSubflow
        && (idle_read(&preload).as_deref() != Some(idle)
            || idle_read(&cgroup).as_deref() != Some(idle));
    let expected_seconds: f64 = idle.parse().expect("a number");
    if read_back_differs
        || !timer_near(&preload.timer, expected_seconds)
        || !timer_near(&cgroup.timer, expected_seconds)
    {
        findings.note(format!(
            "{scenario}: expected idle {idle} read back and on the subflow\n    \
             preload mode: read {}, subflow timer {:?}\n    \
             cgroup mode:  read {}, subflow timer {:?}",
            shown(&preload.values),
            preload.timer,
            shown(&cgroup.values),
            cgroup.timer
        ));
    }
    (preload, cgroup)
}

#[test]
fn mptcp_the_programs_own_idle_is_kept_under_on_and_rewritten_under_force() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    if !require_mptcp() {
        return;
    }
    let mut findings = Findings::default();
    mptcp_scenario(
        &mut findings,
        "MPTCP, on; program sets idle=15 before connect",
        "on",
        &["--before", "idle=15"],
        "15",
        Check::ReadBackAndSubflow,
    );
    mptcp_scenario(
        &mut findings,
        "MPTCP, on; program sets idle=15 after connect",
        "on",
        &["--after", "idle=15"],
        "15",
        Check::ReadBackAndSubflow,
    );
    mptcp_scenario(
        &mut findings,
        "MPTCP, force; program sets idle=15 after connect",
        "force",
        &["--after", "idle=15"],
        "300",
        Check::ReadBackAndSubflow,
    );
    findings.finish();
}

#[test]
fn mptcp_force_rewrites_the_programs_idle_set_before_connect_on_the_subflow() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    if !require_mptcp() {
        return;
    }
    let mut findings = Findings::default();
    // The subflow probes after the configured 300 s in both modes. The MPTCP socket
    // itself still shows the program's 15 in cgroup mode (README, Limits).
    mptcp_scenario(
        &mut findings,
        "MPTCP, force; program sets idle=15 before connect",
        "force",
        &["--before", "idle=15"],
        "300",
        Check::SubflowOnly,
    );
    // With no setting of its own, the subflow gets the configured idle too.
    mptcp_scenario(
        &mut findings,
        "MPTCP, on; the program sets nothing",
        "on",
        &[],
        "300",
        Check::SubflowOnly,
    );
    findings.finish();
}

#[test]
fn ss_timers_are_read_in_every_format() {
    for (timer, seconds) in [
        ("4min59sec", 299.0),
        ("14sec", 14.0),
        ("6.900ms", 6.9),
        ("900ms", 0.9),
        ("12min", 720.0),
        ("", 0.0),
    ] {
        assert_eq!(timer_seconds(timer), Some(seconds), "{timer}");
    }
    assert_eq!(timer_seconds("soon"), None);
}
