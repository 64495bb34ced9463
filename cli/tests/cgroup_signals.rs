//! `keepalive --cgroup -- COMMAND` as a supervisor: every signal it can forward reaches
//! COMMAND, once; keepalive never ends before COMMAND and ends with its status; a
//! signal at any moment of setup, run or cleanup leaves no cgroup and no program
//! behind; Ctrl-C at a terminal reaches COMMAND once; forwarding goes through pidfds.
//!
//! COMMAND is tests/support/signals.c, which writes a line for each signal it gets,
//! with the sender's si_code and si_pid.

#[path = "support/cgroup.rs"]
mod cgroup;
#[path = "support/cli.rs"]
mod cli;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use cgroup::{TestCgroup, own_cgroup, run_cgroups};
use cli::{keepalive_command, text};

const SI_USER: i32 = 0;
const SI_KERNEL: i32 = 0x80;

/// The recorder: a line per signal received, `got SIG code=C pid=P`.
fn recorder() -> PathBuf {
    support::compile("cli/tests/support/signals.c", "signals", &[])
}

/// One `got SIG code=C pid=P` line, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Got {
    signal: i32,
    code: i32,
    pid: i32,
}

fn parse_got(line: &str) -> Option<Got> {
    let rest = line.trim().strip_prefix("got ")?;
    let mut fields = rest.split_whitespace();
    let signal = fields.next()?.parse().ok()?;
    let code = fields.next()?.strip_prefix("code=")?.parse().ok()?;
    let pid = fields.next()?.strip_prefix("pid=")?.parse().ok()?;
    Some(Got { signal, code, pid })
}

fn send(pid: u32, signal: i32) {
    // SAFETY: kill has no memory preconditions; pid is a child of this test, not yet
    // reaped, so it cannot be another process.
    let sent = unsafe { libc::kill(pid as i32, signal) };
    assert_eq!(sent, 0, "kill({pid}, {signal})");
}

/// `keepalive --cgroup -- RECORDER`, its output read line by line; killed, with what
/// it left in its cgroup, when dropped.
struct Run {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Run {
    fn start(mut command: Command) -> Run {
        command.stdout(Stdio::piped());
        let mut child = command.spawn().expect("keepalive starts");
        let stdout = child.stdout.take().expect("piped");
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Run {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line that `matches`, waiting up to 10 s; fails with what was seen and
    /// whether keepalive is still running.
    fn expect(&mut self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if matches(&line) {
                        return line;
                    }
                }
                Err(error) => panic!(
                    "no {what} from COMMAND ({error}); it wrote {:?}; keepalive: {:?}",
                    self.seen,
                    self.child.try_wait()
                ),
            }
        }
    }

    fn still_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "keepalive did not end in 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        kill_what_is_left(&own_cgroup().join(format!("keepalive-run.{}", self.pid())));
    }
}

/// Kills the processes a killed keepalive left in its cgroup, and waits (up to 10 s)
/// until none is left; the cgroup itself stays, for the next run to remove. Returns
/// whether it emptied. Never panics: it also runs while a failed test unwinds.
fn kill_what_is_left(cgroup: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap_or_default();
        if procs.trim().is_empty() {
            return true;
        }
        for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
            // SAFETY: kill has no memory preconditions. These are COMMANDs of a killed
            // keepalive, in a cgroup of this test's.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The bit of `signal` in a /proc-style signal set.
fn bit(signal: i32) -> u64 {
    1 << (signal - 1)
}

#[test]
fn every_signal_reaches_the_command_and_keepalive_waits_for_it() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let mut command = keepalive_command(&["--cgroup", "--"]);
    command.arg(recorder());
    // keepalive starts with SIGPROF blocked, SIGVTALRM and SIGCHLD ignored: COMMAND
    // must start with exactly that, whatever keepalive blocks and sets for itself (it
    // cannot wait for COMMAND with SIGCHLD ignored).
    // SAFETY: the closure runs between fork and exec and calls only sigemptyset,
    // sigaddset, sigprocmask and signal, which are async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGPROF);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            libc::signal(libc::SIGVTALRM, libc::SIG_IGN);
            libc::signal(libc::SIGCHLD, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut run = Run::start(command);
    let start = run.expect("start line", |l| l.starts_with("start "));
    let field = |key: &str| {
        let value = start
            .split_whitespace()
            .find_map(|f| f.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {start}"));
        u64::from_str_radix(value, 16).expect("hex")
    };
    assert_eq!(
        field("mask="),
        bit(libc::SIGPROF),
        "COMMAND's signal mask: {start}"
    );
    assert_eq!(
        field("ignored=") & !bit(libc::SIGPIPE),
        bit(libc::SIGVTALRM) | bit(libc::SIGCHLD),
        "COMMAND's ignored signals: {start}"
    );
    run.expect("ready", |l| l == "ready");

    let keepalive = run.pid() as i32;
    for signal in [
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGALRM,
        libc::SIGHUP,
        libc::SIGWINCH,
        libc::SIGURG,
        libc::SIGPIPE,
        libc::SIGRTMIN() + 2,
    ] {
        send(run.pid(), signal);
        let line = run.expect(&format!("signal {signal}"), |l| {
            parse_got(l).is_some_and(|g| g.signal == signal)
        });
        assert_eq!(
            parse_got(&line),
            Some(Got {
                signal,
                code: SI_USER,
                pid: keepalive
            }),
            "signal {signal} is forwarded by keepalive"
        );
        assert!(run.still_running(), "keepalive ended after signal {signal}");
    }
    // An ignored signal stays ignored: keepalive neither dies of it nor passes it on.
    send(run.pid(), libc::SIGVTALRM);
    std::thread::sleep(Duration::from_millis(200));
    assert!(run.still_running(), "keepalive ended on an ignored signal");

    send(run.pid(), libc::SIGTERM);
    run.expect("SIGTERM", |l| {
        parse_got(l).is_some_and(|g| g.signal == libc::SIGTERM)
    });
    let status = run.wait();
    assert_eq!(status.code(), Some(3), "COMMAND's exit status: {status:?}");
    let got: Vec<Got> = run.seen.iter().filter_map(|l| parse_got(l)).collect();
    assert_eq!(
        got.len(),
        9,
        "each signal once, nothing else: {:?}",
        run.seen
    );
    assert!(
        !own_cgroup()
            .join(format!("keepalive-run.{}", run.pid()))
            .exists(),
        "the run's cgroup is left"
    );
}

/// A small deterministic generator for the delays (no dependency for it); the seed is
/// printed, so that a failing sequence can be told.
struct Delays(u64);

impl Delays {
    fn next_below(&mut self, limit: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % limit
    }
}

#[test]
fn a_signal_at_any_moment_leaves_nothing_behind() {
    let Some(_alone) = cgroup::start_alone() else {
        return;
    };
    // The runs start in a cgroup of the test's own, so that their run cgroups are
    // told apart from those of keepalive runs going on beside it.
    let home = TestCgroup::new("signals");
    let ours = cgroup::NewPrograms::from_now();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let mut delays = Delays(seed);
    let mut outcomes = Vec::new();
    for round in 0..30 {
        // One run in four is killed with SIGKILL, which nothing can clean up after.
        let signal = if round % 4 == 3 {
            libc::SIGKILL
        } else {
            libc::SIGTERM
        };
        let delay = delays.next_below(120);
        let mut command = keepalive_command(&["--cgroup", "--", "sleep", "0.05"]);
        home.enter(&mut command);
        let mut child = command.spawn().expect("keepalive starts");
        std::thread::sleep(Duration::from_millis(delay));
        send(child.id(), signal);
        let status = child.wait().expect("keepalive ends");
        let cgroup = home.0.join(format!("keepalive-run.{}", child.id()));
        outcomes.push(format!("{signal}@{delay}ms: {status:?}"));
        if signal == libc::SIGKILL {
            assert!(
                kill_what_is_left(&cgroup),
                "{} stays busy",
                cgroup.display()
            );
            continue;
        }
        assert!(
            !cgroup.exists(),
            "SIGTERM {delay} ms after start left {} ({status:?}); seed {seed}, runs: {outcomes:?}",
            cgroup.display()
        );
        // keepalive ends only as COMMAND does: COMMAND's status (0, or 143 when the
        // SIGTERM reached it), or the signal's own when it came before keepalive
        // could block it, when there was nothing to clean up yet.
        let code = status.code();
        assert!(
            matches!(code, Some(0) | Some(143)) || code.is_none(),
            "SIGTERM {delay} ms after start: {status:?}"
        );
    }
    // A normal run removes what the SIGKILLed runs left.
    let mut last = keepalive_command(&["--cgroup", "--", "true"]);
    home.enter(&mut last);
    let last = last.output().expect("keepalive starts");
    assert!(last.status.success(), "{}", text(&last.stderr));
    eprintln!("seed {seed}: {outcomes:?}");
    assert_eq!(
        run_cgroups(&home.0),
        Vec::<PathBuf>::new(),
        "cgroups left; seed {seed}, runs: {outcomes:?}"
    );
    ours.assert_freed(&format!("seed {seed}, runs: {outcomes:?}"));
}

/// Runs `keepalive --cgroup -- RECORDER FILE [own-group]` under tests/support/ctrl_c.py
/// (a new session on a pseudo-terminal), which presses Ctrl-C `presses` times, then
/// sends SIGINT and SIGTERM to keepalive from outside. Returns ctrl_c.py's report and
/// the signals COMMAND got.
fn at_a_terminal(presses: u32, own_group: bool) -> (serde_json::Value, Vec<Got>) {
    let dir = support::TempDir::new(&format!("ctrl-c-{own_group}"));
    let record = dir.0.join("record");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/ctrl_c.py");
    let mut command = cli::clean(support::python3());
    command
        .arg(script)
        .arg(&record)
        .arg(presses.to_string())
        .args(["--", env!("CARGO_BIN_EXE_keepalive"), "--cgroup", "--"])
        .arg(recorder())
        .arg(&record);
    if own_group {
        command.arg("own-group");
    }
    let output = command.output().expect("python3 runs");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("ctrl_c.py prints JSON");
    let recorded = std::fs::read_to_string(&record).unwrap_or_default();
    assert_eq!(report["ready"], true, "COMMAND never got ready: {recorded}");
    (report, recorded.lines().filter_map(parse_got).collect())
}

/// The terminal sends SIGINT to its whole foreground process group, keepalive and
/// COMMAND alike: keepalive must not send it again (a second SIGINT is "abort now" to
/// terraform), unless COMMAND left the group, which the terminal then missed.
#[test]
fn ctrl_c_at_a_terminal_reaches_the_command_once() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let (report, got) = at_a_terminal(3, false);
    let keepalive = report["pid"].as_i64().expect("a pid") as i32;
    let interrupts: Vec<&Got> = got.iter().filter(|g| g.signal == libc::SIGINT).collect();
    let from_terminal = interrupts.iter().filter(|g| g.code == SI_KERNEL).count();
    let from_keepalive = interrupts
        .iter()
        .filter(|g| g.code == SI_USER && g.pid == keepalive)
        .count();
    // Three presses: three from the terminal itself; the kill -INT from outside: one,
    // passed on by keepalive. Nothing else.
    assert_eq!(
        (from_terminal, from_keepalive, interrupts.len()),
        (3, 1, 4),
        "SIGINTs COMMAND got: {got:?}; terminal: {}",
        report["terminal"]
    );
    assert_eq!(report["exit"], 3, "{report}");

    // COMMAND left keepalive's group: the terminal signals keepalive alone, which
    // must pass it on.
    let (report, got) = at_a_terminal(1, true);
    let keepalive = report["pid"].as_i64().expect("a pid") as i32;
    let interrupts: Vec<&Got> = got.iter().filter(|g| g.signal == libc::SIGINT).collect();
    let forwarded = Got {
        signal: libc::SIGINT,
        code: SI_USER,
        pid: keepalive,
    };
    assert_eq!(
        interrupts,
        vec![&forwarded; 2],
        "SIGINTs COMMAND in its own group got: {got:?}"
    );
    assert_eq!(report["exit"], 3, "{report}");
}

#[test]
fn signals_are_forwarded_through_a_pidfd_never_by_pid() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let strace = Command::new("strace").arg("-V").output();
    if !support::require(
        strace.is_ok_and(|o| o.status.success()),
        "strace (package strace) is not installed",
    ) {
        return;
    }
    let dir = support::TempDir::new("pidfd");
    let trace = dir.0.join("trace");
    let mut command = cli::clean("strace");
    command
        .args(["-f", "-qq", "-o"])
        .arg(&trace)
        .args([
            "-e",
            "trace=kill,tkill,tgkill,rt_sigqueueinfo,rt_tgsigqueueinfo,pidfd_send_signal",
            "--",
            env!("CARGO_BIN_EXE_keepalive"),
            "--cgroup",
            "--",
        ])
        .arg(recorder())
        .env("KEEPALIVE_LIBRARY", support::library());
    let mut run = Run::start(command);
    run.expect("ready", |l| l == "ready");
    // strace's only child is keepalive.
    let strace_pid = run.pid();
    let children =
        std::fs::read_to_string(format!("/proc/{strace_pid}/task/{strace_pid}/children"))
            .expect("strace's children");
    let keepalive: u32 = children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("keepalive runs under strace");
    for signal in [libc::SIGINT, libc::SIGTERM] {
        send(keepalive, signal);
        run.expect(&format!("signal {signal}"), |l| {
            parse_got(l).is_some_and(|g| g.signal == signal)
        });
    }
    let status = run.wait();
    assert_eq!(status.code(), Some(3), "{status:?}");
    let calls = std::fs::read_to_string(&trace).expect("strace's output");
    for name in ["SIGINT", "SIGTERM"] {
        assert!(
            calls
                .lines()
                .any(|l| l.contains("pidfd_send_signal(") && l.contains(name)),
            "{name} not sent with pidfd_send_signal:\n{calls}"
        );
    }
    // kill(PID, 0) only asks whether a process exists; anything else by pid could
    // reach a recycled pid.
    let by_pid: Vec<&str> = calls
        .lines()
        .filter(|l| {
            ["kill(", "tkill(", "rt_sigqueueinfo("]
                .iter()
                .any(|call| l.contains(&format!(" {call}")))
                && !l.contains(", 0)")
        })
        .collect();
    assert!(by_pid.is_empty(), "signals sent by pid: {by_pid:?}");
}
