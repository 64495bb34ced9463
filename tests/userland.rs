//! The shipped files in other userlands, as a multi-stage image build or an old server
//! would meet them: the library and the statically linked command built here by
//! scripts/build.sh are copied into minimal Debian 11 (bullseye, glibc 2.31, where
//! dlsym still lives in libdl.so.2) and Debian 13 (trixie, glibc 2.41) roots, at
//! /usr/local/lib/libkeepalive.so and /usr/local/bin/keepalive, and run there in a
//! chroot with its own mount, PID and network namespaces and a fresh /proc, as in a
//! container. Also a dynamically linked musl program (as on Alpine), on this machine.
//!
//! The roots are made by mmdebstrap from Debian's packages (minbase, plus python3 and
//! netcat-traditional) once, cached in /var/cache/libkeepalive-tests (outside the
//! checkout, so a new checkout reuses them), and unpacked into target/test-tmp for
//! each run of this test binary, removed when it exits (delete a cached file to have
//! it made again; the first test checks what the others assume of it). Needs root (chroot, mount,
//! namespaces); the first run also needs mmdebstrap (scripts/test.sh installs it) and
//! deb.debian.org.
//!
//! KEEPALIVE_TEST_LIBRARY and KEEPALIVE_TEST_COMMAND, when set, replace the library
//! and the command built by scripts/build.sh. They exist to show that these tests fail
//! on an older build, which did not load on glibc before 2.34.

#[allow(dead_code)] // only tcp_socket_options is used here
#[path = "support/netns.rs"]
mod netns;
mod support;

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use netns::{NAMESPACE_DEFAULTS, tcp_socket_options};
use support::{parse_probe, require, root, target_dir};

const MIRROR: &str = "http://deb.debian.org/debian";
/// Where the roots' tar files are kept between runs, named by suite and package list.
const CACHE: &str = "/var/cache/libkeepalive-tests";
/// Beyond minbase (which brings dash, coreutils and perl-base): a TCP client that links
/// only libc (nc.traditional), and python3, which links libdl in bullseye.
const PACKAGES: [&str; 2] = ["netcat-traditional", "python3"];
const SUITES: [&str; 2] = ["bullseye", "trixie"];

/// Where a multi-stage image build puts the two files.
const LIBRARY_IN_ROOT: &str = "/usr/local/lib/libkeepalive.so";
const COMMAND_IN_ROOT: &str = "/usr/local/bin/keepalive";
/// A copy of the command alone, and the library where Debian's libkeepalive0 put it.
const LONE_COMMAND_IN_ROOT: &str = "/opt/tool/keepalive";
const DEBIAN_LIBRARY_IN_ROOT: &str = "/usr/lib/libkeepalive.so";
const CLIENT_IN_ROOT: &str = "/opt/tests/client.py";
const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const TIMINGS: [(&str, &str); 3] = [("KEEPIDLE", "31"), ("KEEPINTVL", "7"), ("KEEPCNT", "4")];
/// keepalive, idle, intvl, cnt, user timeout, as TIMINGS configure them.
const CONFIGURED: [i64; 5] = [1, 31, 7, 4, 0];
/// `keepalive --idle 31`: the interval and count stay the fresh namespace's.
const IDLE_ONLY: [i64; 5] = [1, 31, NAMESPACE_DEFAULTS[1], NAMESPACE_DEFAULTS[2], 0];
/// Bound on a program in a root starting and connecting.
const START: Duration = Duration::from_secs(20);

/// The library and the command as they are shipped.
struct Shipped {
    library: PathBuf,
    command: PathBuf,
}

/// Built by scripts/build.sh (the library, and the command statically linked), once
/// per test binary, unless both overrides are set.
fn shipped() -> &'static Shipped {
    static SHIPPED: OnceLock<Shipped> = OnceLock::new();
    SHIPPED.get_or_init(|| {
        let overrides = ["KEEPALIVE_TEST_LIBRARY", "KEEPALIVE_TEST_COMMAND"]
            .map(|name| std::env::var_os(name).map(PathBuf::from));
        let built: Vec<PathBuf> = if overrides.iter().all(Option::is_some) {
            Vec::new()
        } else {
            let output = support::command(root().join("scripts/build.sh"), None, &[])
                .output()
                .expect("scripts/build.sh starts");
            assert!(
                output.status.success(),
                "scripts/build.sh failed: {:?}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(PathBuf::from)
                .collect()
        };
        let [library, command] = overrides;
        let shipped = Shipped {
            library: library.unwrap_or_else(|| built[0].clone()),
            command: command.unwrap_or_else(|| built[1].clone()),
        };
        for path in [&shipped.library, &shipped.command] {
            assert!(path.is_file(), "{} is not a file", path.display());
        }
        shipped
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The suite's root as a tar file, from the cache or made now by mmdebstrap.
fn cached_tar(suite: &str) -> Result<PathBuf, String> {
    let tar = Path::new(CACHE).join(format!("{suite}-minbase-{}.tar", PACKAGES.join(",")));
    if tar.is_file() {
        return Ok(tar);
    }
    let have = Command::new("mmdebstrap")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        return Err(format!(
            "{} is not cached and mmdebstrap is not installed (scripts/test.sh installs it)",
            tar.display()
        ));
    }
    std::fs::create_dir_all(CACHE).unwrap_or_else(|e| panic!("create {CACHE}: {e}"));
    let mut partial = tar.clone().into_os_string();
    partial.push(format!(".partial-{}", std::process::id()));
    let started = Instant::now();
    let output = Command::new("mmdebstrap")
        .args(["--quiet", "--variant=minbase", "--format=tar"])
        .arg(format!("--include={}", PACKAGES.join(",")))
        .arg(suite)
        .arg(&partial)
        .arg(MIRROR)
        .stdin(Stdio::null())
        .output()
        .expect("mmdebstrap starts");
    if !output.status.success() {
        let _ = std::fs::remove_file(&partial);
        panic!(
            "mmdebstrap {suite} failed: {:?}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // Renamed into place: another test binary may be reading or making the same file.
    std::fs::rename(&partial, &tar).expect("move the root into the cache");
    eprintln!("made {} in {:?}", tar.display(), started.elapsed());
    Ok(tar)
}

/// Roots unpacked by this test binary, removed when it exits.
static UNPACKED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

extern "C" fn remove_unpacked() {
    for dir in UNPACKED.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Removes roots left in target/test-tmp by runs that were killed before they exited.
fn remove_stale_roots(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let owner = name
            .strip_prefix("userland-")
            .and_then(|rest| rest.rsplit('-').next())
            .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()));
        if owner.is_some_and(|pid| !Path::new("/proc").join(pid).exists()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Unpacks the suite's root and installs in it what an image build would copy.
fn unpack(suite: &str) -> Result<PathBuf, String> {
    let tar = cached_tar(suite)?;
    let tmp = target_dir().join("test-tmp");
    static SWEEP: Once = Once::new();
    SWEEP.call_once(|| {
        remove_stale_roots(&tmp);
        // SAFETY: remove_unpacked is an extern "C" fn without arguments that neither
        // unwinds nor exits; atexit only records its address.
        unsafe { libc::atexit(remove_unpacked) };
    });
    let dir = tmp.join(format!("userland-{suite}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the root's directory");
    UNPACKED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(dir.clone());
    let output = Command::new("tar")
        .arg("--numeric-owner")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&dir)
        .output()
        .expect("tar starts");
    assert!(
        output.status.success(),
        "unpacking {} failed:\n{}",
        tar.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let shipped = shipped();
    for (from, to) in [
        (&shipped.library, LIBRARY_IN_ROOT),
        (&shipped.command, COMMAND_IN_ROOT),
        (&shipped.command, LONE_COMMAND_IN_ROOT),
        (&shipped.library, DEBIAN_LIBRARY_IN_ROOT),
        (
            &root().join("tests/support/userland/client.py"),
            CLIENT_IN_ROOT,
        ),
    ] {
        let to = dir.join(to.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().expect("a directory")).expect("create a directory");
        std::fs::copy(from, &to)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
    }
    Ok(dir)
}

/// The suite's root, unpacked once per test binary, or None (after `require`) where
/// it cannot be had.
fn prepare(suite: &str) -> Option<&'static Path> {
    if !require(
        is_root(),
        "chroot, mount and namespaces in other userlands need root",
    ) {
        return None;
    }
    static ROOTS: [OnceLock<Result<PathBuf, String>>; 2] = [OnceLock::new(), OnceLock::new()];
    let index = SUITES
        .iter()
        .position(|s| *s == suite)
        .expect("a known suite");
    match ROOTS[index].get_or_init(|| unpack(suite)) {
        Ok(dir) => Some(dir),
        Err(why) => {
            require(false, why);
            None
        }
    }
}

/// A named network namespace with its loopback up, deleted when dropped (also when the
/// test fails). Named like the network tests' beds (`ka-<pid>-...`), whose sweep
/// removes any left behind by a killed run.
struct NetNs {
    name: String,
}

impl NetNs {
    fn new() -> NetNs {
        static SWEEP: Once = Once::new();
        SWEEP.call_once(remove_stale_namespaces);
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "ka-{}-userland{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        let netns = NetNs { name };
        ip(&["-n", &netns.name, "link", "set", "lo", "up"]);
        netns
    }

    /// A listener on 127.0.0.1 inside the namespace: made by a thread that enters it,
    /// and a socket stays in the namespace it was created in.
    fn listen(&self) -> TcpListener {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: setns takes a descriptor of a namespace file and a type; it changes
            // only this thread's network namespace.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            TcpListener::bind("127.0.0.1:0").expect("listen in the namespace")
        })
        .join()
        .expect("the listening thread")
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Removes this test's namespaces left by runs that were killed before they ended.
fn remove_stale_namespaces() {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let owner = name
            .strip_prefix("ka-")
            .and_then(|rest| rest.split_once("-userland"))
            .map(|(pid, _)| pid);
        if owner.is_some_and(|pid| !Path::new("/proc").join(pid).exists()) {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        output.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `program` run in `root` as in a container: new mount and PID namespaces with a fresh
/// /proc, a new network namespace with its loopback up (or `netns`), `setup` (shell,
/// on the host's side, with the root in $root) before the chroot, and an environment
/// of PATH and `env` only. No host program is preloaded: the variables are set by the
/// root's own env(1), the first program of the root to load the library.
fn in_root(
    root: &Path,
    netns: Option<&NetNs>,
    setup: &str,
    env: &[(&str, &str)],
    program: &[&str],
) -> Command {
    let script = format!(
        "set -e; root=$1; shift; ip link set lo up; mount -t proc proc \"$root/proc\"; \
         {setup} exec timeout -k 5 60 chroot \"$root\" /usr/bin/env -i {PATH} \"$@\""
    );
    let mut command = match netns {
        Some(netns) => {
            let mut command = support::command("nsenter", None, &[]);
            command.arg(format!("--net=/run/netns/{}", netns.name));
            command.arg("unshare");
            command
        }
        None => {
            let mut command = support::command("unshare", None, &[]);
            command.arg("--net");
            command
        }
    };
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent. It asks
    // for unshare to be killed when the thread that started it ends: when this test
    // ends, and when this test binary is killed. --kill-child then ends the PID
    // namespace, and all in it, with unshare.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    command
        .args(["--mount", "--pid", "--fork", "--kill-child", "--"])
        .args(["sh", "-c", &script, "sh"])
        .arg(root)
        .args(env.iter().map(|(name, value)| format!("{name}={value}")))
        .args(program);
    command
}

/// What a program printed and how it ended.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl From<Output> for Outcome {
    fn from(output: Output) -> Outcome {
        Outcome {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

fn run_in(root: &Path, setup: &str, env: &[(&str, &str)], program: &[&str]) -> Outcome {
    in_root(root, None, setup, env, program)
        .output()
        .expect("unshare starts")
        .into()
}

/// LD_PRELOAD of the library as an image installs it, and the timings.
fn preloaded() -> Vec<(&'static str, &'static str)> {
    let mut env = vec![("LD_PRELOAD", LIBRARY_IN_ROOT)];
    env.extend(TIMINGS);
    env
}

/// The one line of client.py's (or the probe's) report, as five options, and the
/// library it was preloaded with.
fn client_report(suite: &str, what: &str, outcome: &Outcome) -> ([i64; 5], String) {
    assert!(
        outcome.code == Some(0) && outcome.stderr.is_empty(),
        "{suite}: {what}: {outcome:#?}"
    );
    let sockets = parse_probe(outcome.stdout.as_bytes());
    assert_eq!(sockets.len(), 1, "{suite}: {what}: {outcome:#?}");
    let preload = outcome
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("preload="))
        .unwrap_or_else(|| panic!("{suite}: {what}: no preload line: {outcome:#?}"));
    (sockets[0].options(), preload.to_string())
}

/// The facts the other tests stand on: each root's glibc, and which of its programs
/// link libdl (those that do not are the ones an undefined dlsym stops).
fn the_root_is_what_the_tests_assume(suite: &str) {
    let Some(root) = prepare(suite) else {
        return;
    };
    let (glibc, with_libdl): (&str, &[&str]) = match suite {
        // ls only through libselinux.
        "bullseye" => (
            "2.31",
            &["/bin/bash", "/bin/ls", "/usr/bin/perl", "/usr/bin/python3"],
        ),
        _ => ("2.41", &[]),
    };
    let version = run_in(root, "", &[], &["ldd", "--version"]);
    let first = version.stdout.lines().next().unwrap_or_default();
    assert!(first.ends_with(glibc), "{suite}: glibc {first:?}");
    for program in [
        "/bin/true",
        "/bin/sh",
        "/bin/cat",
        "/bin/ls",
        "/usr/bin/env",
        "/bin/nc.traditional",
        "/bin/bash",
        "/usr/bin/perl",
        "/usr/bin/python3",
    ] {
        let outcome = run_in(root, "", &[], &["ldd", program]);
        assert_eq!(
            outcome.code,
            Some(0),
            "{suite}: ldd {program}: {outcome:#?}"
        );
        assert_eq!(
            outcome.stdout.contains("libdl.so"),
            with_libdl.contains(&program),
            "{suite}: does {program} link libdl?\n{}",
            outcome.stdout
        );
    }
}

/// Preloaded, programs that never open a socket run as without it: same exit status,
/// not a byte of output more.
fn programs_run_as_without_the_library(suite: &str) {
    let Some(root) = prepare(suite) else {
        return;
    };
    let env = preloaded();
    let quiet = |code: i32, stdout: &str| Outcome {
        code: Some(code),
        stdout: stdout.to_string(),
        stderr: String::new(),
    };
    let release = std::fs::read_to_string(root.join("etc/debian_version")).expect("a release");
    for (program, expected) in [
        (&["/bin/true"][..], quiet(0, "")),
        (&["/bin/sh", "-c", "exit 7"][..], quiet(7, "")),
        (&["/bin/cat", "/etc/debian_version"][..], quiet(0, &release)),
    ] {
        let outcome = run_in(root, "", &env, program);
        assert_eq!(
            outcome, expected,
            "{suite}: LD_PRELOAD={LIBRARY_IN_ROOT} {program:?}"
        );
    }
    let listing = run_in(root, "", &env, &["/bin/ls", "/"]);
    assert!(
        listing.code == Some(0)
            && listing.stderr.is_empty()
            && listing.stdout.lines().any(|l| l == "usr"),
        "{suite}: LD_PRELOAD={LIBRARY_IN_ROOT} ls /: {listing:#?}"
    );
}

/// The host's pid of the process named `comm` below `ancestor`, if there is one.
fn descendant_named(ancestor: u32, comm: &str) -> Option<u32> {
    let mut parents = HashMap::new();
    let mut named = Vec::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...; comm may hold spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parents.insert(pid, ppid);
        }
        if &stat[open + 1..close] == comm {
            named.push(pid);
        }
    }
    named.into_iter().find(|&pid| {
        let mut current = pid;
        while let Some(&parent) = parents.get(&current) {
            if parent == ancestor {
                return true;
            }
            current = parent;
        }
        false
    })
}

/// A started program, killed and reaped when dropped (also when the test fails).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// nc.traditional, which links nothing but libc (so no dlsym in bullseye), connects to
/// a server in its network namespace; its socket's options are read from outside it,
/// by pidfd_getfd from this process, as `keepalive inspect` does.
fn a_program_without_libdl_gets_the_options(suite: &str) {
    let Some(root) = prepare(suite) else {
        return;
    };
    let netns = NetNs::new();
    let listener = netns.listen();
    let port = listener
        .local_addr()
        .expect("an address")
        .port()
        .to_string();
    let mut client = Running(
        in_root(
            root,
            Some(&netns),
            "",
            &preloaded(),
            &["/bin/nc.traditional", "127.0.0.1", &port],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare starts"),
    );
    let deadline = Instant::now() + START;
    let options = loop {
        if let Some(status) = client.0.try_wait().expect("try_wait") {
            let mut stderr = String::new();
            if let Some(mut pipe) = client.0.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            panic!("{suite}: nc.traditional ended before connecting: {status}\n{stderr}");
        }
        if let Some(pid) = descendant_named(client.0.id(), "nc.traditional") {
            let options = tcp_socket_options(pid);
            if !options.is_empty() {
                break options;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{suite}: nc.traditional did not connect in {START:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        options,
        vec![CONFIGURED],
        "{suite}: nc.traditional's socket (keepalive, idle, intvl, cnt, user timeout)"
    );
}

/// python3 (which links libdl in bullseye) reads its socket's options back itself.
fn python_gets_the_options(suite: &str) {
    let Some(root) = prepare(suite) else {
        return;
    };
    let outcome = run_in(root, "", &preloaded(), &["python3", CLIENT_IN_ROOT]);
    let (options, preload) = client_report(suite, "python3", &outcome);
    assert_eq!(options, CONFIGURED, "{suite}: python3's socket");
    assert_eq!(preload, LIBRARY_IN_ROOT);
}

/// The static command, run inside the root with its own /proc, finds the library
/// installed beside it in /usr/local and preloads it into the program.
fn the_command_runs_in_the_root(suite: &str) {
    let Some(root) = prepare(suite) else {
        return;
    };
    let program = [
        COMMAND_IN_ROOT,
        "--idle",
        "31",
        "--",
        "python3",
        CLIENT_IN_ROOT,
    ];
    let outcome = run_in(root, "", &[], &program);
    let (options, preload) = client_report(suite, "keepalive --idle 31 -- python3", &outcome);
    assert_eq!(
        options, IDLE_ONLY,
        "{suite}: the socket of python3 under {program:?}"
    );
    assert_eq!(preload, LIBRARY_IN_ROOT);
}

/// A copy of the command alone, with no library beside it or in its prefix and none in
/// /usr/local/lib (hidden by an empty tmpfs), finds the one at Debian's path.
fn a_lone_command_finds_the_library_in_usr_lib(suite: &str) {
    let Some(root) = prepare(suite) else {
        return;
    };
    let program = [
        LONE_COMMAND_IN_ROOT,
        "--idle",
        "31",
        "--",
        "python3",
        CLIENT_IN_ROOT,
    ];
    let hide = "mount -t tmpfs tmpfs \"$root/usr/local/lib\";";
    let outcome = run_in(root, hide, &[], &program);
    let (options, preload) = client_report(suite, "/opt/tool/keepalive --idle 31", &outcome);
    assert_eq!(
        options, IDLE_ONLY,
        "{suite}: the socket of python3 under {program:?}"
    );
    assert_eq!(preload, DEBIAN_LIBRARY_IN_ROOT);
}

/// One test per check and suite: `bullseye::python_gets_the_options`, ...
macro_rules! in_each_root {
    ($($check:ident),* $(,)?) => {
        mod bullseye {
            $(#[test] fn $check() { super::$check("bullseye") })*
        }
        mod trixie {
            $(#[test] fn $check() { super::$check("trixie") })*
        }
    };
}

in_each_root!(
    the_root_is_what_the_tests_assume,
    programs_run_as_without_the_library,
    a_program_without_libdl_gets_the_options,
    python_gets_the_options,
    the_command_runs_in_the_root,
    a_lone_command_finds_the_library_in_usr_lib,
);

/// A dynamically linked musl program (interpreter /lib/ld-musl-x86_64.so.1, as on
/// Alpine) loads the library: the probe, built with musl-gcc, reads its sockets'
/// options back itself.
#[test]
fn a_musl_program_gets_the_options() {
    let musl = Command::new("musl-gcc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !require(musl, "musl-gcc is not installed (musl-tools)") {
        return;
    }
    let probe = support::compile_with(
        "musl-gcc",
        "tests/support/probe.c",
        "probe-musl-dynamic",
        &[],
    );
    let headers = Command::new("readelf")
        .arg("-l")
        .arg(&probe)
        .output()
        .expect("readelf runs");
    let headers = String::from_utf8_lossy(&headers.stdout);
    assert!(
        headers.contains("[Requesting program interpreter: /lib/ld-musl-x86_64.so.1]"),
        "the musl probe is not dynamically linked against musl:\n{headers}"
    );
    // The library alone (the same cargo build as scripts/build.sh's first step): this
    // test needs no static command.
    let library = std::env::var_os("KEEPALIVE_TEST_LIBRARY")
        .map_or_else(|| support::library().to_path_buf(), PathBuf::from);
    let output = support::run(&probe, &["tcp4", "tcp6"], Some(&library), &TIMINGS);
    let outcome = Outcome::from(output);
    assert!(
        outcome.code == Some(0) && outcome.stderr.is_empty(),
        "{outcome:#?}"
    );
    let sockets = parse_probe(outcome.stdout.as_bytes());
    assert_eq!(sockets.len(), 2, "{outcome:#?}");
    for socket in sockets {
        assert_eq!(socket.options(), CONFIGURED, "{socket:?}");
    }
}

/// A program with a program interpreter but no C library (Go built as a PIE without
/// cgo) starts under the library exactly as without it: the loader loads a C library
/// for the library, which the library names (libc.so.6) without a version. Nothing
/// reaches its sockets (Go makes its own system calls): only that it is not harmed.
#[test]
fn a_program_without_a_c_library_starts_as_without_it() {
    let go = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !require(go, "go is not installed (golang-go)") {
        return;
    }
    let program = support::target_dir().join("test-programs/nolibc-pie");
    let built = Command::new("go")
        .args(["build", "-buildmode=pie", "-o"])
        .arg(&program)
        .arg(".")
        .current_dir(support::root().join("tests/support/userland/nolibc"))
        .env("CGO_ENABLED", "0")
        .env("GOFLAGS", "-mod=mod")
        .env("GOCACHE", support::target_dir().join("go-cache"))
        .output()
        .expect("go runs");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let dynamic = Command::new("readelf")
        .args(["-l", "-d"])
        .arg(&program)
        .output()
        .expect("readelf runs");
    let dynamic = String::from_utf8_lossy(&dynamic.stdout);
    assert!(
        dynamic.contains("Requesting program interpreter") && !dynamic.contains("(NEEDED)"),
        "not a PIE without a C library:\n{dynamic}"
    );
    let library = std::env::var_os("KEEPALIVE_TEST_LIBRARY")
        .map_or_else(|| support::library().to_path_buf(), PathBuf::from);
    let output = support::run(&program, &[], Some(&library), &TIMINGS);
    let outcome = Outcome::from(output);
    assert!(
        outcome.code == Some(0) && outcome.stdout == "started\n" && outcome.stderr.is_empty(),
        "{outcome:#?}"
    );
}
