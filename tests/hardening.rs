//! Hardening: tests that try to make the library hurt the program it is loaded into:
//! races, forks, signals, other preloaded libraries, a changed environment, a reused
//! descriptor 2, seccomp, hostile values, memory errors, leaked symbols, file access.
//! The C programs they drive live in tests/support/hardening/.

mod support;

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{TempDir, command, library, probe, probe_sockets, require, run};

/// A configuration that differs from every kernel default, and what it gives a TCP
/// socket, in the order of tests/support/hardening/common.h.
const CONFIG: [(&str, &str); 4] = [
    ("KEEPIDLE", "61"),
    ("KEEPINTVL", "7"),
    ("KEEPCNT", "4"),
    ("KEEPALIVE_USER_TIMEOUT", "12345"),
];
const EXPECT: &str = "1,61,7,4,12345";

/// Longest any one program may run: a deadlock fails the test instead of hanging it.
const DEADLINE: Duration = Duration::from_secs(120);

/// tests/support/hardening/NAME.c, compiled on first use to
/// target/test-programs/hardening/OUTPUT, with `flags`.
fn compile(name: &str, output: &str, flags: &[&str]) -> PathBuf {
    let flags: Vec<&str> = ["-pthread"].iter().chain(flags).copied().collect();
    support::compile(
        &format!("tests/support/hardening/{name}.c"),
        &format!("hardening/{output}"),
        &flags,
    )
}

fn program(name: &str) -> PathBuf {
    compile(name, name, &[])
}

fn shared_object(name: &str) -> PathBuf {
    compile(name, &format!("{name}.so"), &["-shared", "-fPIC"])
}

/// Runs a command to completion within DEADLINE (killing it and failing otherwise)
/// and returns its output.
fn bounded(mut command: Command) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the program starts");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let err = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        bytes
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the program") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} still running after {DEADLINE:?}: deadlock?");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// The program's standard output after checking that it exited 0.
fn succeeded(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "program failed: {:?}\nstderr: {stderr}",
        output.status
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The number after `key=` in a line of `key=value` fields.
fn field(line: &str, key: &str) -> i64 {
    line.split_whitespace()
        .find_map(|f| f.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {line:?}"))
}

fn preloaded(program: &Path, env: &[(&str, &str)]) -> Command {
    command(program, Some(library()), env)
}

// ---------------------------------------------------------------------------------
// Concurrency, fork, exec, signals

#[test]
fn sixteen_threads_racing_from_the_first_socket_all_get_the_configuration() {
    let mut threads = preloaded(&program("threads"), &CONFIG);
    threads.args(["16", "2000", EXPECT]);
    let line = succeeded(&bounded(threads));
    assert_eq!(field(&line, "sockets"), 32_000, "{line}");
    assert_eq!(field(&line, "mismatches"), 0, "{line}");
    assert_eq!(field(&line, "failures"), 0, "{line}");
}

#[test]
fn the_check_sees_a_socket_without_the_configuration() {
    // The same program without the library must count every socket as wrong, or the
    // test above proves nothing.
    let mut threads = command(program("threads"), None, &[]);
    threads.args(["2", "10", EXPECT]);
    let line = succeeded(&bounded(threads));
    assert_eq!(field(&line, "mismatches"), 20, "{line}");
}

#[test]
fn a_fork_storm_with_a_busy_thread_gives_every_child_configured_sockets() {
    let mut forks = preloaded(&program("forks"), &CONFIG);
    forks.args(["fork", "300", EXPECT]);
    let line = succeeded(&bounded(forks));
    assert_eq!(field(&line, "failed"), 0, "{line}");
}

#[test]
fn an_exec_storm_loads_the_library_afresh_in_every_child() {
    let mut execs = preloaded(&program("forks"), &CONFIG);
    execs
        .args(["exec", "200", EXPECT])
        .env("KEEPALIVE_LOG", "info");
    let output = bounded(execs);
    let line = succeeded(&output);
    assert_eq!(field(&line, "failed"), 0, "{line}");
    // One configuration line per process: the parent and each child read their own.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains("keepalive on, idle 61s"))
            .count(),
        201,
        "{stderr}"
    );
}

#[test]
fn sockets_created_inside_a_signal_handler_interrupting_socket_are_configured() {
    for log in ["warn", "debug"] {
        let mut signals = preloaded(&program("signals"), &CONFIG);
        signals.args(["1.5", EXPECT]).env("KEEPALIVE_LOG", log);
        let line = succeeded(&bounded(signals));
        assert!(
            field(&line, "handler") > 100,
            "too few signals to prove anything: {line}"
        );
        assert_eq!(field(&line, "mismatches"), 0, "KEEPALIVE_LOG={log}: {line}");
        assert_eq!(
            field(&line, "errno_changed"),
            0,
            "KEEPALIVE_LOG={log}: {line}"
        );
    }
}

// ---------------------------------------------------------------------------------
// Another preloaded library's constructor, the environment changed by the program

/// Runs the probe with early.so and the library preloaded in `order`, early.so's
/// constructor creating sockets in `threads` racing threads; returns early.so's
/// report and standard error.
fn with_early_library(
    early_first_in_list: bool,
    threads: &str,
    extra: &[(&str, &str)],
) -> (String, String) {
    let early = shared_object("early");
    let list = if early_first_in_list {
        format!("{}:{}", early.display(), library().display())
    } else {
        format!("{}:{}", library().display(), early.display())
    };
    let mut env = CONFIG.to_vec();
    env.extend_from_slice(&[
        ("KEEPALIVE_LOG", "info"),
        ("EARLY_EXPECT", EXPECT),
        ("EARLY_THREADS", threads),
    ]);
    env.extend_from_slice(extra);
    let mut probe = command(probe(), None, &env);
    probe.env("LD_PRELOAD", list).arg("tcp4");
    let output = bounded(probe);
    let stdout = succeeded(&output);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("early:"))
        .expect("early.so reports")
        .to_string();
    (line, String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Whether early.so's constructor ran before the library read its configuration.
fn early_ran_first(stderr: &str) -> bool {
    let early = stderr
        .find("early: constructor")
        .expect("early.so's constructor ran");
    let config = stderr
        .find("libkeepalive: pid")
        .expect("the library logged its configuration");
    early < config
}

#[test]
fn sockets_from_another_preloaded_constructor_are_configured_in_either_order() {
    // glibc runs preloaded constructors from the last listed to the first: with the
    // library listed first, early.so's sockets come before the library's constructor.
    for (early_first_in_list, early_runs_first) in [(false, true), (true, false)] {
        let (line, stderr) = with_early_library(early_first_in_list, "1", &[]);
        assert_eq!(
            early_ran_first(&stderr),
            early_runs_first,
            "order not as intended:\n{stderr}"
        );
        assert_eq!(field(&line, "sockets"), 50, "{line}");
        assert_eq!(field(&line, "mismatches"), 0, "{line}\n{stderr}");
    }
}

#[test]
fn threads_racing_for_the_first_configuration_read_agree_and_warn_once() {
    let (line, stderr) = with_early_library(
        false,
        "16",
        &[("KEEPALIVE", "bogus"), ("EARLY_SOCKETS", "300")],
    );
    assert!(early_ran_first(&stderr), "{stderr}");
    assert_eq!(field(&line, "sockets"), 16 * 300, "{line}");
    assert_eq!(field(&line, "mismatches"), 0, "{line}");
    assert_eq!(
        stderr.matches("KEEPALIVE=\"bogus\"").count(),
        1,
        "one warning per process:\n{stderr}"
    );
    assert_eq!(
        stderr.matches("libkeepalive: pid").count(),
        1,
        "one configuration line:\n{stderr}"
    );
}

#[test]
fn the_configuration_is_the_one_the_program_started_with() {
    let clearenv = program("clearenv");
    for mode in ["clear", "change", "off"] {
        let output = run(&clearenv, &[mode], Some(library()), &CONFIG);
        let line = succeeded(&output);
        let options =
            ["keepalive", "idle", "intvl", "cnt", "user_timeout"].map(|k| field(&line, k));
        assert_eq!(options, [1, 61, 7, 4, 12345], "after {mode}: {line}");
    }
}

// ---------------------------------------------------------------------------------
// Descriptor 2

/// A command whose descriptor 2 is closed when it starts.
fn with_stderr_closed(mut command: Command) -> Command {
    // SAFETY: close() is async-signal-safe and touches only the child's descriptor
    // table, between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            libc::close(2);
            Ok(())
        });
    }
    command
}

/// Environments under which the library has something to write: a warning at start,
/// debug lines for every socket, or both.
const CHATTY: [&[(&str, &str)]; 3] = [
    &[("KEEPIDLE", "bad")],
    &[("KEEPALIVE_LOG", "debug")],
    &[("KEEPALIVE_LOG", "debug"), ("KEEPCNT", "0")],
];

#[test]
fn nothing_is_written_into_a_socket_that_took_descriptor_2() {
    for env in CHATTY {
        for closed_at_start in [true, false] {
            let mut fd2 = preloaded(&program("fd2"), env);
            fd2.arg("socket");
            if closed_at_start {
                fd2 = with_stderr_closed(fd2);
            }
            let line = succeeded(&bounded(fd2));
            assert_eq!(
                field(&line, "leaked"),
                0,
                "{env:?}, closed at start: {closed_at_start}: {line}"
            );
        }
    }
}

#[test]
fn nothing_is_written_into_a_file_that_took_descriptor_2() {
    let dir = TempDir::new("fd2-file");
    let path = dir.0.join("data");
    for env in CHATTY {
        let mut fd2 = preloaded(&program("fd2"), env);
        fd2.arg("file").arg(&path);
        let line = succeeded(&bounded(fd2));
        assert_eq!(field(&line, "leaked"), 0, "{env:?}: {line}");
    }
}

#[test]
fn nothing_is_written_into_a_new_file_that_got_the_old_stderr_inode_number() {
    let dir = TempDir::new("fd2-inode");
    let path = dir.0.join("data");
    let mut fd2 = preloaded(&program("fd2"), &[("KEEPALIVE_LOG", "debug")]);
    fd2.arg("reexec").arg(&path);
    let line = succeeded(&bounded(fd2));
    if !require(
        field(&line, "same_inode") == 1,
        "the file system did not reuse the inode number",
    ) {
        return;
    }
    assert_eq!(field(&line, "leaked"), 0, "{line}");
}

#[test]
fn nothing_is_written_into_a_socket_another_constructor_put_on_descriptor_2() {
    // early.so closes descriptor 2 and creates the process's first socket before the
    // library's constructor has run: that socket lands on descriptor 2.
    for extra in [
        [("KEEPIDLE", "bad"), ("KEEPALIVE_LOG", "warn")],
        [("KEEPIDLE", "61"), ("KEEPALIVE_LOG", "debug")],
    ] {
        let (line, _) = with_early_library(false, "1", &[("EARLY_FD2", "1"), extra[0], extra[1]]);
        assert_eq!(field(&line, "leaked"), 0, "{extra:?}: {line}");
    }
}

#[test]
fn a_standard_error_nobody_reads_does_not_kill_the_program() {
    // Descriptor 2 is a pipe whose reading end is closed: a plain write() there
    // raises SIGPIPE, which kills a program that never writes to standard error itself.
    let mut ends = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array, which is two ints long.
    assert_eq!(
        unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) },
        0
    );
    // SAFETY: both descriptors were just created and are owned here alone.
    let (reading, writing) =
        unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
    drop(reading);
    let mut probe = preloaded(&probe(), &[("KEEPIDLE", "bad"), ("KEEPALIVE_LOG", "debug")]);
    let output = probe
        .arg("tcp4")
        .stderr(Stdio::from(writing))
        .output()
        .expect("the probe starts");
    assert!(output.status.success(), "{:?}", output.status);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("kind=tcp4"),
        "{output:?}"
    );
}

// ---------------------------------------------------------------------------------
// seccomp

#[test]
fn under_a_seccomp_filter_refusing_setsockopt_socket_still_succeeds_with_errno_untouched() {
    for env in [
        &CONFIG[..],
        &[
            ("KEEPALIVE", "force"),
            ("KEEPIDLE", "61"),
            ("KEEPALIVE_LOG", "debug"),
        ],
    ] {
        let output = bounded(preloaded(&program("seccomp"), env));
        let line = succeeded(&output);
        assert!(field(&line, "fd") >= 3, "{line}");
        assert_eq!(field(&line, "errno"), 4242, "{line}");
        assert_eq!(
            field(&line, "keepalive"),
            0,
            "the filter let setsockopt through: {line}"
        );
        // The program's own call fails as the filter says, with the real errno.
        assert!(line.contains("own_setsockopt=-1/1 "), "{line}");
    }
}

// ---------------------------------------------------------------------------------
// Hostile environment

/// Runs the probe on a TCP socket with exactly `env` (duplicates and raw bytes kept,
/// see execenv.c) plus LD_PRELOAD; returns the probe's line and standard error.
fn probe_with_exact_env(env: &[&str]) -> (support::Socket, String) {
    let mut execenv = Command::new(program("execenv"));
    execenv
        .arg(format!("LD_PRELOAD={}", library().display()))
        .args(env)
        .arg("--")
        .arg(probe())
        .arg("tcp4");
    let output = bounded(execenv);
    let stdout = succeeded(&output);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("kind="))
        .expect("the probe reports");
    let socket = support::Socket(
        line.split_whitespace()
            .filter_map(|f| f.split_once('='))
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
    );
    (socket, String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn with_duplicated_variables_the_first_wins_as_for_getenv() {
    let (socket, stderr) = probe_with_exact_env(&["KEEPIDLE=abc", "KEEPIDLE=60", "KEEPCNT=4"]);
    assert_eq!(
        socket.int("idle"),
        support::kernel_defaults()[0],
        "{stderr}"
    );
    assert_eq!(socket.int("cnt"), 4);
    assert_eq!(socket.int("errno"), 4242);
    assert_eq!(stderr.matches("libkeepalive:").count(), 1, "{stderr}");
    assert!(stderr.contains("KEEPIDLE=\"abc\" is not valid"), "{stderr}");

    let (socket, stderr) = probe_with_exact_env(&["KEEPIDLE=60", "KEEPIDLE=abc"]);
    assert_eq!(socket.int("idle"), 60);
    assert_eq!(stderr, "");
}

#[test]
fn non_utf8_signs_and_inner_spaces_are_refused_with_a_clear_warning_and_the_rest_applies() {
    let (socket, stderr) = probe_with_exact_env(&[
        "KEEPIDLE=\\xff60",
        "KEEPINTVL=+7",
        "KEEPCNT=4",
        "KEEPALIVE_USER_TIMEOUT=1 000",
        "KEEPALIVE=o\\xc3\\xa9n",
    ]);
    assert_eq!(socket.int("keepalive"), 1);
    assert_eq!(socket.int("cnt"), 4);
    assert_eq!(socket.int("errno"), 4242);
    for expected in [
        "libkeepalive: KEEPALIVE=\"o\\xc3\\xa9n\" is not valid;",
        "libkeepalive: KEEPIDLE=\"\\xff60\" is not valid;",
        "libkeepalive: KEEPINTVL=\"+7\" is not valid;",
        "libkeepalive: KEEPALIVE_USER_TIMEOUT=\"1 000\" is not valid;",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    assert_eq!(stderr.lines().count(), 4, "{stderr}");
}

#[test]
fn every_variable_set_but_empty_means_the_defaults_and_one_warning_each() {
    let empty: Vec<(&str, &str)> = keepalive_config::Var::ALL
        .map(|var| (var.name(), ""))
        .to_vec();
    let (sockets, stderr) = probe_sockets(Some(library()), &empty, &["tcp4", "udp4"]);
    let [idle, intvl, cnt] = support::kernel_defaults();
    assert_eq!(sockets[0].options(), [1, idle, intvl, cnt, 0]);
    assert_eq!(
        stderr.lines().filter(|l| l.contains("is empty;")).count(),
        6,
        "{stderr}"
    );
}

#[test]
fn values_as_long_as_execve_allows_are_handled() {
    // execve refuses a single string over 128 KiB (MAX_ARG_STRLEN).
    let long = 120 * 1024;
    let padded_idle = format!("{}60{}", " ".repeat(long / 2), "\t".repeat(long / 2));
    let digits = "9".repeat(long);
    let env = [
        ("KEEPIDLE", padded_idle.as_str()),
        ("KEEPINTVL", digits.as_str()),
        ("KEEPCNT", "4"),
    ];
    let (sockets, stderr) = probe_sockets(Some(library()), &env, &["tcp4"]);
    assert_eq!(sockets[0].int("idle"), 60);
    assert_eq!(sockets[0].int("cnt"), 4);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.len() < 512,
        "a warning is one short line: {} bytes",
        stderr.len()
    );
    assert!(
        stderr.contains(&format!("... ({long} bytes) is out of range")),
        "{stderr}"
    );
}

#[test]
fn megabyte_values_set_before_the_library_reads_them_are_handled() {
    let list = format!(
        "{}:{}",
        library().display(),
        shared_object("bigenv").display()
    );
    let mut probe = command(probe(), None, &[]);
    probe.env("LD_PRELOAD", list).arg("tcp4");
    let output = bounded(probe);
    let stdout = succeeded(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("kind="))
        .expect("the probe reports");
    assert_eq!(field(line, "idle"), 60, "{stderr}");
    assert_eq!(field(line, "errno"), 4242);
    assert_eq!(stderr.lines().count(), 3, "{stderr}");
    assert_eq!(stderr.matches("... (1048576 bytes)").count(), 3, "{stderr}");
}

// ---------------------------------------------------------------------------------
// The command-line tool parses like the library

/// The `keepalive` command, built on first use.
fn keepalive_command() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "keepalive-cli",
            "--bin",
            "keepalive",
        ])
        .current_dir(support::root())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the keepalive command failed");
    support::target_dir().join("debug/keepalive")
}

/// Values near the grammar, from a fixed-seed generator: pieces of valid values and
/// of near misses glued together, so that about half are valid.
fn generated_values(how_many: usize) -> Vec<String> {
    const PIECES: [&str; 24] = [
        "1",
        "60",
        "007",
        "32767",
        "32768",
        "127",
        "0",
        "99999999999999999999",
        "s",
        "m",
        "h",
        "ms",
        "M",
        "H",
        " ",
        "\t",
        "+",
        "-",
        ".5",
        "x",
        "auto",
        "OFF",
        "force",
        "debug",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound as u64) as usize
    };
    (0..how_many)
        .map(|_| {
            (0..1 + next(3))
                .map(|_| PIECES[next(PIECES.len())])
                .collect()
        })
        .collect()
}

#[test]
fn the_command_accepts_and_refuses_exactly_what_the_library_parser_does() {
    use keepalive_config::{count, log_level, mode, seconds, user_timeout};
    let keepalive = keepalive_command();
    type Accepts = fn(&[u8]) -> bool;
    let options: [(&str, Accepts); 5] = [
        ("--idle", |v| seconds(v).is_ok()),
        ("--count", |v| count(v).is_ok()),
        ("--user-timeout", |v| user_timeout(v).is_ok()),
        ("--mode", |v| mode(v).is_ok()),
        ("--log", |v| log_level(v).is_ok()),
    ];
    let (mut accepted, mut refused) = (0, 0);
    for (option, parser_accepts) in options {
        for value in generated_values(60) {
            let mut run = command(
                &keepalive,
                None,
                &[("KEEPALIVE_LIBRARY", library().to_str().unwrap())],
            );
            let output = run
                .arg(format!("{option}={value}"))
                .args(["--", "true"])
                .output()
                .expect("keepalive starts");
            let expected = parser_accepts(value.as_bytes());
            let code = output.status.code();
            assert_eq!(
                code,
                Some(if expected { 0 } else { 2 }),
                "{option}={value:?}: parser {}, command said {}",
                if expected { "accepts" } else { "refuses" },
                String::from_utf8_lossy(&output.stderr)
            );
            if expected {
                accepted += 1
            } else {
                refused += 1
            }
        }
    }
    assert!(
        accepted > 30 && refused > 30,
        "the sample tests both sides: {accepted} accepted, {refused} refused"
    );
}

// ---------------------------------------------------------------------------------
// Memory, symbols, files

fn tool_available(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn memcheck_finds_no_error_and_no_leak() {
    if !require(tool_available("valgrind"), "valgrind is not installed") {
        return;
    }
    let script = support::root().join("scripts/memcheck.sh");
    let mut memcheck = Command::new(script);
    memcheck
        .env("KEEPALIVE_LIBRARY", library())
        .env("KEEPALIVE_PROBE", probe());
    let output = bounded(memcheck);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "memcheck failed:\n{stderr}");
    assert!(stderr.contains("ERROR SUMMARY: 0 errors"), "{stderr}");
}

/// User-space instructions callgrind counts for one start of /bin/true with `preload`
/// and an environment of `env` only.
fn exec_instructions(preload: &Path, env: &[(&str, &str)]) -> u64 {
    let dir = TempDir::new(&format!(
        "callgrind-{}",
        preload.file_name().unwrap().to_string_lossy()
    ));
    let out = dir.0.join("out");
    let status = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg("/bin/true")
        .env_clear()
        .env("LD_PRELOAD", preload)
        .envs(env.iter().copied())
        .stderr(Stdio::null())
        .status()
        .expect("valgrind runs");
    assert!(status.success());
    let text = std::fs::read_to_string(&out).expect("callgrind's output");
    text.lines()
        .find_map(|l| l.strip_prefix("summary: "))
        .and_then(|n| n.trim().parse().ok())
        .expect("a summary line")
}

#[test]
fn a_start_costs_few_instructions_more_than_an_empty_preloaded_library() {
    if !require(tool_available("valgrind"), "valgrind is not installed") {
        return;
    }
    let empty = support::compile("bench/empty.c", "empty.so", &["-shared", "-fPIC"]);
    // A configured process with a dozen other variables, as a service has.
    let mut env: Vec<(String, String)> = (0..12)
        .map(|i| (format!("VAR{i}"), "x".repeat(20)))
        .collect();
    env.extend(
        [("KEEPIDLE", "60"), ("KEEPALIVE_USER_TIMEOUT", "auto")].map(|(k, v)| (k.into(), v.into())),
    );
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let floor = exec_instructions(&empty, &env);
    let ours = exec_instructions(library(), &env);
    let extra = ours.saturating_sub(floor);
    // Measured here: 13.3k over the empty library with six getenv() scans and dlsym at
    // load, 9.5k with one walk over the environment and the lookups on first socket(),
    // 6.0k without the C start files (-nostartfiles: four fewer symbol lookups), 4.9k
    // once the log line stopped zeroing its buffer (memset no longer imported).
    assert!(
        extra < 5_000,
        "{ours} instructions, {extra} over an empty library ({floor})"
    );
}

/// The dynamic symbols of an ELF file, as `nm -D` prints them, with versions.
fn dynamic_symbols(file: &Path, which: &str) -> Vec<(String, String)> {
    let output = Command::new("nm")
        .args(["-D", which, "--with-symbol-versions"])
        .arg(file)
        .output()
        .expect("nm (binutils)");
    assert!(
        output.status.success(),
        "nm {}: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace().rev();
            let name = fields.next()?;
            let kind = fields.next()?;
            Some((kind.to_string(), name.to_string()))
        })
        .collect()
}

#[test]
fn no_symbol_of_a_dependency_leaks_and_every_import_is_in_every_c_library() {
    // Every defined dynamic symbol (weak, versioned or not), not only the text ones.
    let defined = dynamic_symbols(library(), "--defined-only");
    let names: Vec<&str> = defined.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names.len(), 2, "{defined:?}");
    assert!(
        defined.iter().all(|(kind, _)| kind == "T"),
        "only plain global functions: {defined:?}"
    );
    assert!(
        names.contains(&"socket") && names.contains(&"setsockopt"),
        "{defined:?}"
    );

    // The library names libc.so.6 and no symbol version: linked against the real one,
    // its imports would be bound to the versions of the glibc it was built on
    // (dlsym@GLIBC_2.34 on Debian 12), which glibc before 2.34 refuses at load, weak
    // reference or not; naming no C library at all, it would stop programs that have
    // none (a Go PIE) on its first import.
    let dynamic = readelf(&["-d"], library());
    let needed: Vec<&str> = dynamic.lines().filter(|l| l.contains("(NEEDED)")).collect();
    assert_eq!(needed.len(), 1, "{dynamic}");
    assert!(needed[0].contains("[libc.so.6]"), "{dynamic}");
    assert!(!dynamic.contains("(VERNEED)"), "{dynamic}");

    // Exactly these imports, each of which glibc 2.17 and later and musl define; only
    // dlsym is weak, since before glibc 2.34 it is in libdl.so.2, which most programs
    // do not load (the library then calls the kernel directly).
    let mut imports = dynamic_symbols(library(), "--undefined-only");
    imports.sort();
    let expected = [
        ("U", "__errno_location"),
        ("U", "environ"),
        ("U", "memcpy"),
        ("U", "syscall"),
        ("w", "dlsym"),
    ];
    let mut expected: Vec<(String, String)> = expected
        .iter()
        .map(|(kind, name)| (kind.to_string(), name.to_string()))
        .collect();
    expected.sort();
    assert_eq!(imports, expected);

    let glibc = Path::new("/lib/x86_64-linux-gnu/libc.so.6");
    let musl = Path::new("/lib/x86_64-linux-musl/libc.so");
    for c_library in [glibc, musl] {
        if !require(
            c_library.exists(),
            &format!("{} is not installed (libc6, musl)", c_library.display()),
        ) {
            continue;
        }
        let exported: Vec<String> = dynamic_symbols(c_library, "--defined-only")
            .into_iter()
            .map(|(_, name)| name.split('@').next().unwrap_or_default().to_string())
            .collect();
        for (_, name) in &imports {
            assert!(
                exported.contains(name),
                "{name} is not defined by {}",
                c_library.display()
            );
        }
    }
}

/// What `readelf ARGS FILE` prints.
fn readelf(args: &[&str], file: &Path) -> String {
    let output = Command::new("readelf")
        .args(args)
        .arg(file)
        .output()
        .expect("readelf (binutils)");
    assert!(
        output.status.success(),
        "readelf {args:?} {}",
        file.display()
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs the probe under strace (which itself runs without the library) and returns
/// the traced system calls that name files or use descriptors.
fn file_syscalls(preload: Option<&Path>, env: &[(&str, &str)]) -> Vec<String> {
    let dir = TempDir::new("strace");
    let trace = dir.0.join("trace");
    let mut strace = command("strace", None, &[]);
    strace
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=%file,%desc,memfd_create",
            "-e",
            "signal=none",
            "-o",
        ])
        .arg(&trace);
    for (name, value) in env {
        strace.arg("-E").arg(format!("{name}={value}"));
    }
    if let Some(library) = preload {
        strace
            .arg("-E")
            .arg(format!("LD_PRELOAD={}", library.display()));
    }
    strace
        .arg("--")
        .arg(probe())
        .args(["tcp4", "tcp6", "udp4", "unix-stream"]);
    let output = bounded(strace);
    assert!(
        output.status.success(),
        "strace failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read_to_string(&trace)
        .expect("strace's output")
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_library_opens_creates_and_writes_no_file() {
    if !require(tool_available("strace"), "strace is not installed") {
        return;
    }
    // Every variable set, including ones that look like paths, and debug logging on.
    let env = [
        ("KEEPALIVE", "/tmp/keepalive-hardening-path"),
        ("KEEPIDLE", "61"),
        ("KEEPINTVL", "7"),
        ("KEEPCNT", "4"),
        ("KEEPALIVE_USER_TIMEOUT", "auto"),
        ("KEEPALIVE_LOG", "debug"),
    ];
    let with = file_syscalls(Some(library()), &env);
    let without = file_syscalls(None, &env);
    let opened = |calls: &[String]| -> Vec<String> {
        calls
            .iter()
            .filter(|c| {
                [
                    "open",
                    "openat",
                    "creat",
                    "memfd_create",
                    "truncate",
                    "mkdir",
                    "unlink",
                    "rename",
                    "link",
                    "symlink",
                ]
                .iter()
                .any(|s| c.contains(&format!("{s}(")))
            })
            .map(|c| {
                c.split_once(' ')
                    .map_or(c.as_str(), |(_, rest)| rest)
                    .to_string()
            })
            .filter(|c| !c.contains(library().to_str().unwrap()))
            .collect()
    };
    assert!(
        opened(&without).iter().any(|c| c.contains("libc.so.6")),
        "the trace shows opens: {without:?}"
    );
    assert_eq!(
        opened(&with),
        opened(&without),
        "the library touched files:\n{}",
        with.join("\n")
    );
    assert!(
        !with
            .iter()
            .any(|c| c.contains("keepalive-hardening-path")
                && !c.contains("write(2, \"libkeepalive: ")),
        "a value was used as a path"
    );
    // Writes: the probe's to standard output, the library's debug lines to descriptor 2.
    let writes: Vec<&String> = with.iter().filter(|c| c.contains("write(")).collect();
    assert!(
        writes
            .iter()
            .any(|c| c.contains("write(2, \"libkeepalive: ")),
        "debug lines expected: {writes:?}"
    );
    assert!(
        writes
            .iter()
            .all(|c| c.contains("write(1, \"kind=") || c.contains("write(2, \"libkeepalive: ")),
        "unexpected write: {writes:?}"
    );
}
