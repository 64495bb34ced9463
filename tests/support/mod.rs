//! Shared by the integration tests of the workspace (the command's tests in cli/tests
//! include it with `#[path]`): builds the library and the C test programs once per
//! test binary, runs programs under the library with a clean environment, reads the
//! probe's report, and gives temporary directories that go away with the test.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

/// The workspace root: the nearest directory above the crate under test that holds
/// Cargo.lock (the crate's own for the library, its parent for cli/).
pub fn root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .find(|dir| dir.join("Cargo.lock").is_file())
            .expect("a Cargo.lock above the crate")
            .to_path_buf()
    })
}

/// Cargo's target directory, where the library and the test programs are built.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// The release build of the library, built on first use. `cargo test` does not build
/// a cdylib-only crate, so the tests build it; release is what ships.
pub fn library() -> &'static Path {
    static LIBRARY: OnceLock<PathBuf> = OnceLock::new();
    LIBRARY.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--release",
                "--quiet",
                "--lib",
                "-p",
                "libkeepalive",
            ])
            .current_dir(root())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the library failed");
        let path = target_dir().join("release/libkeepalive.so");
        assert!(path.exists(), "{} was not built", path.display());
        path
    })
}

/// The release build of the keepalive command, built here (the root crate's tests have
/// no CARGO_BIN_EXE for it).
pub fn keepalive_release() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "--bin", "keepalive"])
        .args(["-p", "keepalive-cli"])
        .current_dir(root())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the keepalive command failed");
    target_dir().join("release/keepalive")
}

/// A C program from tests/support/NAME.c, compiled on first use.
pub fn c_program(name: &str) -> PathBuf {
    compile(&format!("tests/support/{name}.c"), name, &[])
}

/// Compiles `source` (relative to the workspace root) with `flags` into
/// target/test-programs/OUTPUT, once per test binary. The result is renamed into
/// place, so that a test binary running at the same time never runs a half-written
/// program.
pub fn compile(source: &str, output: &str, flags: &[&str]) -> PathBuf {
    compile_with("cc", source, output, flags)
}

/// [`compile`] with another C compiler (musl-gcc for static musl programs). Flags
/// come after the source, so that libraries (-luring) link.
pub fn compile_with(compiler: &str, source: &str, output: &str, flags: &[&str]) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let binary = target_dir().join("test-programs").join(output);
    if !built.iter().any(|b| b == output) {
        let dir = binary.parent().expect("a directory");
        std::fs::create_dir_all(dir).expect("create target/test-programs");
        let mut partial = binary.clone().into_os_string();
        partial.push(format!(".partial-{}", std::process::id()));
        let result = Command::new(compiler)
            .args(["-O2", "-Wall", "-Wextra", "-o"])
            .arg(&partial)
            .arg(root().join(source))
            .args(flags)
            .output()
            .unwrap_or_else(|e| panic!("the C compiler {compiler} runs: {e}"));
        assert!(
            result.status.success(),
            "compiling {source} failed:\n{}",
            String::from_utf8_lossy(&result.stderr)
        );
        std::fs::rename(&partial, &binary).expect("move the program into place");
        built.push(output.to_string());
    }
    binary
}

pub fn probe() -> PathBuf {
    c_program("probe")
}

/// The environment variables that steer the library (and where the keepalive command
/// looks for it), removed from every test's environment so that a developer's own
/// settings cannot change a result.
pub const LIBRARY_VARIABLES: [&str; 8] = [
    "KEEPALIVE",
    "KEEPIDLE",
    "KEEPINTVL",
    "KEEPCNT",
    "KEEPALIVE_USER_TIMEOUT",
    "KEEPALIVE_LOG",
    "KEEPALIVE_LIBRARY",
    "LD_PRELOAD",
];

/// A command with the library's variables cleared, and `preload` (if any) set as
/// LD_PRELOAD together with `env`.
pub fn command(
    program: impl AsRef<std::ffi::OsStr>,
    preload: Option<&Path>,
    env: &[(&str, &str)],
) -> Command {
    let mut command = Command::new(program);
    for name in LIBRARY_VARIABLES {
        command.env_remove(name);
    }
    if let Some(library) = preload {
        command.env("LD_PRELOAD", library);
    }
    command.envs(env.iter().copied()).stdin(Stdio::null());
    command
}

/// Runs `program` to completion and returns its output.
pub fn run(
    program: impl AsRef<std::ffi::OsStr>,
    args: &[&str],
    preload: Option<&Path>,
    env: &[(&str, &str)],
) -> Output {
    command(program, preload, env)
        .args(args)
        .output()
        .expect("the program starts")
}

/// One line of the probe's report: `kind=tcp4 fd=3 errno=4242 keepalive=1 ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socket(pub HashMap<String, String>);

impl Socket {
    pub fn get(&self, key: &str) -> &str {
        self.0
            .get(key)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no {key} in {:?}", self.0))
    }

    pub fn int(&self, key: &str) -> i64 {
        self.get(key)
            .parse()
            .unwrap_or_else(|_| panic!("{key} is not a number in {:?}", self.0))
    }

    /// keepalive, idle, intvl, cnt: what an MPTCP socket can report.
    pub fn keepalive_options(&self) -> [i64; 4] {
        ["keepalive", "idle", "intvl", "cnt"].map(|key| self.int(key))
    }

    /// keepalive, idle, intvl, cnt, user_timeout, in that order.
    pub fn options(&self) -> [i64; 5] {
        ["keepalive", "idle", "intvl", "cnt", "user_timeout"].map(|key| self.int(key))
    }
}

/// Runs the probe on `kinds` and returns one report per kind, in order, after
/// checking that the probe exited 0.
pub fn probe_sockets(
    preload: Option<&Path>,
    env: &[(&str, &str)],
    args: &[&str],
) -> (Vec<Socket>, String) {
    let output = run(probe(), args, preload, env);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "probe failed: {:?}\n{stderr}",
        output.status
    );
    (parse_probe(&output.stdout), stderr)
}

/// The probe's report, one `Socket` per `kind=` line.
pub fn parse_probe(stdout: &[u8]) -> Vec<Socket> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|line| line.starts_with("kind="))
        .map(|line| {
            Socket(
                line.split_whitespace()
                    .filter_map(|field| field.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        })
        .collect()
}

/// The kernel's defaults for a fresh socket in this network namespace
/// (net.ipv4.tcp_keepalive_time, _intvl, _probes), as [idle, intvl, cnt].
pub fn kernel_defaults() -> [i64; 3] {
    ["time", "intvl", "probes"].map(|name| {
        let path = format!("/proc/sys/net/ipv4/tcp_keepalive_{name}");
        std::fs::read_to_string(&path)
            .expect(&path)
            .trim()
            .parse()
            .expect("a number")
    })
}

/// The real python3 interpreter: pyenv's `python3` is a shell script that starts
/// several other processes, each of which would load the library too.
pub fn python3() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let output = Command::new("python3")
                .args(["-c", "import sys; print(sys.executable)"])
                .output()
                .expect("python3 is installed");
            PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
        })
        .clone()
}

/// Whether the tests run in CI, where a test that cannot run must fail.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// How many tests of this binary were skipped, said once more when it exits.
static SKIPPED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

extern "C" fn report_skipped() {
    use std::io::Write;
    let count = SKIPPED.load(std::sync::atomic::Ordering::Relaxed);
    let binary = std::env::current_exe().unwrap_or_default();
    let name = binary.file_name().unwrap_or_default().to_string_lossy();
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {count} test(s) of {name} did not run (see the SKIPPED lines above)"
    );
}

/// Returns true when `available`; otherwise says on standard error which test is
/// skipped and why, or fails the test under CI=true, where nothing may be skipped.
/// The line is written straight to the standard error stream, past libtest's capture
/// (which swallows eprintln! of passing tests), and the binary ends with a count.
pub fn require(available: bool, why: &str) -> bool {
    if !available {
        assert!(!in_ci(), "cannot run under CI=true: {why}");
        let thread = std::thread::current();
        let test = thread.name().unwrap_or("a test");
        let line = format!("SKIPPED: {test}: {why}\n");
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
        if SKIPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0 {
            // SAFETY: report_skipped is an extern "C" fn without arguments that
            // neither unwinds nor exits; atexit only records its address.
            unsafe { libc::atexit(report_skipped) };
        }
    }
    available
}

/// A directory under target/test-tmp, removed when dropped (also when the test fails).
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// `name` tells the tests of one binary apart; the process id, concurrent runs.
    pub fn new(name: &str) -> TempDir {
        let path = target_dir()
            .join("test-tmp")
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts `command` in the cgroup whose directory is `path`: it moves itself there
/// between fork and exec, so that it never runs outside it.
pub fn enter_cgroup(command: &mut Command, path: &Path) {
    use std::os::unix::process::CommandExt;
    let procs = std::ffi::CString::new(
        path.join("cgroup.procs")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .expect("no NUL in the path");
    // SAFETY: the closure runs between fork and exec and calls only open, write and
    // close, which are async-signal-safe; `procs` is moved in and outlives it.
    unsafe {
        command.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            let moved = fd >= 0 && libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
            if fd >= 0 {
                libc::close(fd);
            }
            if moved {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}
