//! Shared by the command's integration tests, on top of the workspace's
//! tests/support/mod.rs (included as `support`): the built command, a Python program
//! holding live TCP connections, and processes that are killed even when a test fails.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{library, python3};

/// A command with the library's variables cleared and no standard input.
pub fn clean(program: impl AsRef<std::ffi::OsStr>) -> Command {
    crate::support::command(program, None, &[])
}

/// Timings unlike every kernel default: a socket given them reads 1, 7, 3, 4, 9000.
pub const TIMING_OPTIONS: [&str; 8] = [
    "--idle",
    "7",
    "--interval",
    "3",
    "--count",
    "4",
    "--user-timeout",
    "9s",
];

/// The command under test, as cargo built it for this test run.
pub fn keepalive() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keepalive"))
}

pub fn holder_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/holder.py")
}

/// `keepalive ARGS`, told where the freshly built library is.
pub fn keepalive_command(args: &[&str]) -> Command {
    let mut command = clean(keepalive());
    command.env("KEEPALIVE_LIBRARY", library()).args(args);
    command
}

pub fn run_keepalive(args: &[&str]) -> Output {
    keepalive_command(args).output().expect("keepalive starts")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A process started by a test, killed and reaped when dropped, so that a failing
/// test leaves nothing running.
pub struct Held {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Held {
    /// Starts `command` with piped standard input and output, and waits (at most 20 s)
    /// for it to print `ready`; returns it with the lines it printed before.
    pub fn start(mut command: Command) -> (Held, Vec<String>) {
        command.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = command.spawn().expect("the held program starts");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut held = Held {
            child,
            stdin,
            stdout,
        };
        let lines = held.read_until_ready();
        (held, lines)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn read_until_ready(&mut self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut lines = Vec::new();
        loop {
            assert!(
                Instant::now() < deadline,
                "no 'ready' in 20 s; got {lines:?}"
            );
            let line = self.read_line();
            if line == "ready" {
                return lines;
            }
            lines.push(line);
        }
    }

    fn read_line(&mut self) -> String {
        let mut line = String::new();
        let n = self
            .stdout
            .read_line(&mut line)
            .expect("read the held program's output");
        assert!(
            n > 0,
            "the held program exited early: {:?}",
            self.child.try_wait()
        );
        line.trim_end().to_string()
    }

    /// Sends one line and reads one line of JSON back (the holder's `report`).
    pub fn ask(&mut self, request: &str) -> Value {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{request}")
            .and_then(|()| stdin.flush())
            .expect("write to the held program");
        serde_json::from_str(&self.read_line()).expect("the held program answers JSON")
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Python holder: loopback listeners, a connection to each, a UDP socket and a
/// Unix socket pair, all held open; `env` goes to its environment. Started through
/// `keepalive` with `wrapper` options when given.
pub fn start_holder(wrapper: Option<&[&str]>) -> (Held, Value) {
    let script = holder_script();
    let python = python3();
    let command = match wrapper {
        Some(options) => {
            let mut command = keepalive_command(options);
            command.arg("--").arg(&python).arg(&script);
            command
        }
        None => {
            let mut command = clean(&python);
            command.arg(&script);
            command
        }
    };
    let (held, lines) = Held::start(command);
    let layout = serde_json::from_str(lines.last().expect("the holder prints its layout"))
        .expect("the holder's layout is JSON");
    (held, layout)
}

/// The Python holder with `args`, started through `launcher` (a command and its
/// arguments, such as `unshare -n ...`, that ends by exec'ing the holder).
pub fn start_holder_via(launcher: &[&str], args: &[&str]) -> (Held, Value) {
    let mut command = clean(launcher[0]);
    command
        .args(&launcher[1..])
        .arg(python3())
        .arg(holder_script())
        .args(args);
    let (held, lines) = Held::start(command);
    let layout = serde_json::from_str(lines.last().expect("the holder prints its layout"))
        .expect("the holder's layout is JSON");
    (held, layout)
}

/// Runs what follows in a new network namespace with its loopback up, then execs it
/// (so the PID is the holder's own).
pub const IN_NEW_NETWORK_NAMESPACE: [&str; 5] = [
    "unshare",
    "-n",
    "sh",
    "-c",
    "ip link set lo up && exec \"$0\" \"$@\"",
];

/// `keepalive inspect --json PID`, parsed; asserts exit status 0.
pub fn inspect_json(pid: i32) -> Value {
    let output = run_keepalive(&["inspect", "--json", &pid.to_string()]);
    assert!(
        output.status.success(),
        "inspect failed: {}",
        text(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("inspect --json prints JSON")
}

/// The socket at descriptor `fd` in one process's `inspect --json` entry.
pub fn socket_at(process: &Value, fd: i64) -> Option<&Value> {
    process["sockets"]
        .as_array()?
        .iter()
        .find(|s| s["fd"].as_i64() == Some(fd))
}

pub fn is_root() -> bool {
    effective_uid() == 0
}

/// The effective user id, from /proc (no extra dependency for one number).
fn effective_uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .expect("a Uid line");
    line.split_whitespace()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .expect("an effective uid")
}
