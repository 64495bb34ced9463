//! The library preloaded into real programs: what the kernel holds for each socket
//! they create, what they see of errno, and what the library writes.

mod support;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::ffi::OsStrExt;
use std::process::Command;

use support::{Socket, kernel_defaults, library, probe_sockets};

const TCP_KINDS: [&str; 7] = [
    "tcp4",
    "tcp6",
    "tcp4-proto",
    "tcp6-proto",
    "tcp4-cloexec",
    "tcp4-nonblock",
    "tcp6-both",
];
const OTHER_KINDS: [&str; 7] = [
    "udp4",
    "udp6",
    "raw4",
    "raw6",
    "unix-stream",
    "unix-seqpacket",
    "unix-dgram",
];
const TIMINGS: [(&str, &str); 3] = [("KEEPIDLE", "61"), ("KEEPINTVL", "7"), ("KEEPCNT", "4")];
const SENTINEL: i64 = 4242;

fn with_library(env: &[(&str, &str)], args: &[&str]) -> Vec<Socket> {
    let (sockets, stderr) = probe_sockets(Some(library()), env, args);
    assert_eq!(stderr, "", "a valid configuration prints nothing");
    sockets
}

fn without_library(args: &[&str]) -> Vec<Socket> {
    probe_sockets(None, &[], args).0
}

fn kernel(keepalive: i64) -> [i64; 5] {
    let [idle, intvl, cnt] = kernel_defaults();
    [keepalive, idle, intvl, cnt, 0]
}

#[test]
fn every_tcp_socket_gets_keepalive_and_the_timings() {
    for socket in with_library(&TIMINGS, &TCP_KINDS) {
        assert_eq!(socket.options(), [1, 61, 7, 4, 0], "{socket:?}");
        assert_eq!(socket.int("errno"), SENTINEL, "errno unchanged: {socket:?}");
    }
}

#[test]
fn mptcp_sockets_are_covered_too() {
    let sockets = with_library(&TIMINGS, &["mptcp4", "mptcp6"]);
    if !support::require(
        sockets.iter().all(|s| s.int("fd") >= 0),
        "this kernel cannot create MPTCP sockets",
    ) {
        return;
    }
    for socket in sockets {
        assert_eq!(socket.keepalive_options(), [1, 61, 7, 4], "{socket:?}");
    }
}

#[test]
fn udp_raw_and_unix_sockets_are_left_exactly_as_without_the_library() {
    let env = [
        TIMINGS.as_slice(),
        &[("KEEPALIVE", "force"), ("KEEPALIVE_USER_TIMEOUT", "5000")],
    ]
    .concat();
    assert_eq!(
        with_library(&env, &OTHER_KINDS),
        without_library(&OTHER_KINDS)
    );
    // The C library 0.3 turns SO_KEEPALIVE on for raw sockets; this one must not.
    for raw in with_library(&env, &["raw4", "raw6"]) {
        assert!(
            raw.int("fd") >= 0,
            "the tests run as root, so raw sockets can be made"
        );
        assert_eq!(raw.int("keepalive"), 0);
    }
}

#[test]
fn force_does_not_touch_a_non_tcp_socket_the_program_configures() {
    // A raw socket with protocol IPPROTO_TCP reports SO_PROTOCOL 6 like a TCP one:
    // the follow-up of the program's setsockopt must not take it for TCP.
    let env = [("KEEPALIVE", "force"), ("KEEPIDLE", "61")];
    let args = [
        "--own-keepalive",
        "0",
        "--own-timings",
        "15,5,3",
        "udp4",
        "unix-stream",
        "raw4",
        "raw6",
    ];
    let with = with_library(&env, &args);
    assert_eq!(with, without_library(&args));
    for raw in &with[2..] {
        assert!(raw.int("fd") >= 0, "raw sockets need root: {raw:?}");
        assert_eq!(raw.int("keepalive"), 0, "{raw:?}");
    }
}

/// The program sees errno exactly as the real call left it, from socket() and from
/// each of its own setsockopt() calls, successful or refused: in every mode, with
/// every kind of user timeout, on every kind of socket. errno is set to a sentinel
/// before each call, and every result and errno is compared with a run without the
/// library.
#[test]
fn errno_is_the_real_calls_in_every_mode_user_timeout_and_socket_kind() {
    let kinds = [
        "tcp4",
        "tcp6",
        "mptcp4",
        "mptcp6",
        "udp4",
        "udp6",
        "raw4",
        "raw6",
        "unix-stream",
    ];
    let args: Vec<&str> = [
        "--own-keepalive",
        "0",
        "--own-timings",
        "15,5,3",
        "--own-user-timeout",
        "1234",
        "--own-keepalive",
        "1",
        "--own-bad-call",
    ]
    .into_iter()
    .chain(kinds)
    .collect();
    let without = without_library(&args);
    for mode in ["on", "skip", "force", "off"] {
        for user_timeout in [None, Some("5000"), Some("auto")] {
            let mut env = vec![("KEEPALIVE", mode), ("KEEPIDLE", "61"), ("KEEPCNT", "4")];
            env.extend(user_timeout.map(|value| ("KEEPALIVE_USER_TIMEOUT", value)));
            let with = with_library(&env, &args);
            assert_eq!(with.len(), kinds.len());
            for (ours, real) in with.iter().zip(&without) {
                for key in ["fd", "errno", "own", "bad_call"] {
                    if real.0.contains_key(key) || ours.0.contains_key(key) {
                        assert_eq!(
                            ours.get(key),
                            real.get(key),
                            "{key} under {env:?}: {ours:?}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn with_no_variable_set_keepalive_is_on_with_the_kernel_timings() {
    for socket in with_library(&[], &["tcp4", "tcp6"]) {
        assert_eq!(socket.options(), kernel(1), "{socket:?}");
    }
}

#[test]
fn keepalive_off_leaves_every_socket_alone() {
    let all: Vec<&str> = TCP_KINDS.iter().chain(&OTHER_KINDS).copied().collect();
    for mode in ["off", "OFF", "Off"] {
        let env = [
            TIMINGS.as_slice(),
            &[("KEEPALIVE", mode), ("KEEPALIVE_USER_TIMEOUT", "auto")],
        ]
        .concat();
        assert_eq!(
            with_library(&env, &all),
            without_library(&all),
            "KEEPALIVE={mode}"
        );
    }
}

#[test]
fn skip_applies_the_timings_but_leaves_so_keepalive_to_the_program() {
    let env = [TIMINGS.as_slice(), &[("KEEPALIVE", "skip")]].concat();
    assert_eq!(with_library(&env, &["tcp4"])[0].options(), [0, 61, 7, 4, 0]);
    let own = with_library(&env, &["--own-keepalive", "1", "tcp4"]);
    assert_eq!(own[0].options(), [1, 61, 7, 4, 0]);
}

#[test]
fn on_lets_a_program_that_sets_its_own_keepalive_win() {
    let env = [
        TIMINGS.as_slice(),
        &[("KEEPALIVE", "on"), ("KEEPALIVE_USER_TIMEOUT", "9000")],
    ]
    .concat();
    let args = [
        "--own-keepalive",
        "0",
        "--own-timings",
        "15,5,3",
        "--own-user-timeout",
        "1234",
        "tcp4",
    ];
    assert_eq!(with_library(&env, &args)[0].options(), [0, 15, 5, 3, 1234]);
}

#[test]
fn force_keeps_the_user_values_the_program_tries_to_change() {
    let env = [
        ("KEEPALIVE", "force"),
        ("KEEPIDLE", "61"),
        ("KEEPINTVL", "7"),
        ("KEEPALIVE_USER_TIMEOUT", "9000"),
    ];
    let args = [
        "--own-keepalive",
        "0",
        "--own-timings",
        "15,5,3",
        "--own-user-timeout",
        "1234",
        "tcp4",
        "tcp6",
    ];
    for socket in with_library(&env, &args) {
        // KEEPCNT was not configured, so the program's own count stands.
        assert_eq!(socket.options(), [1, 61, 7, 3, 9000], "{socket:?}");
        assert_eq!(socket.int("errno"), SENTINEL);
    }
}

#[test]
fn force_with_auto_user_timeout_follows_the_forced_timings() {
    let env = [
        ("KEEPALIVE", "force"),
        ("KEEPIDLE", "2"),
        ("KEEPINTVL", "3"),
        ("KEEPCNT", "4"),
        ("KEEPALIVE_USER_TIMEOUT", "auto"),
    ];
    let args = [
        "--own-timings",
        "15,5,3",
        "--own-user-timeout",
        "1234",
        "tcp4",
    ];
    assert_eq!(with_library(&env, &args)[0].options(), [1, 2, 3, 4, 14_000]);
}

#[test]
fn force_passes_on_the_error_of_a_call_the_kernel_refuses() {
    // setsockopt(TCP_KEEPIDLE) with a length of 0: EINVAL from the kernel, which the
    // program must see even though the library would replace the value.
    let env = [
        ("KEEPALIVE", "force"),
        ("KEEPIDLE", "61"),
        ("KEEPALIVE_USER_TIMEOUT", "auto"),
    ];
    let args = ["--own-bad-call", "tcp4", "udp4"];
    let with = with_library(&env, &args);
    let without = without_library(&args);
    for (ours, real) in with.iter().zip(&without) {
        assert_eq!(ours.get("bad_call"), real.get("bad_call"), "{ours:?}");
    }
    assert_eq!(with[0].get("bad_call"), "-1/22", "EINVAL");
    assert_eq!(with[0].int("idle"), 61);
}

#[test]
fn an_auto_user_timeout_follows_the_timings_the_program_sets() {
    // redis-cli sets 15/5/3 after socket(): the user timeout must cover its window,
    // not the 1/1/3 the library set, or the connection would be cut after 4 s.
    let env = [TIMINGS.as_slice(), &[("KEEPALIVE_USER_TIMEOUT", "auto")]].concat();
    let own = with_library(&env, &["--own-timings", "15,5,3", "tcp4"]);
    assert_eq!(own[0].options(), [1, 15, 5, 3, 30_000]);
    // Under force the configured timings stay; the ones left to the program follow it.
    let env = [
        ("KEEPALIVE", "force"),
        ("KEEPIDLE", "2"),
        ("KEEPALIVE_USER_TIMEOUT", "auto"),
    ];
    let forced = with_library(&env, &["--own-timings", "30,5,3", "tcp4"]);
    assert_eq!(forced[0].options(), [1, 2, 5, 3, 17_000]);
}

#[test]
fn a_user_timeout_the_program_sets_itself_is_not_recomputed() {
    let env = [TIMINGS.as_slice(), &[("KEEPALIVE_USER_TIMEOUT", "auto")]].concat();
    let args = [
        "--own-user-timeout",
        "1234",
        "--own-timings",
        "15,5,3",
        "tcp4",
    ];
    assert_eq!(with_library(&env, &args)[0].options(), [1, 15, 5, 3, 1234]);
}

#[test]
fn user_timeout_takes_a_value_auto_or_off() {
    let value = with_library(&[("KEEPALIVE_USER_TIMEOUT", "5s")], &["tcp4"]);
    assert_eq!(value[0].int("user_timeout"), 5000);
    let plain = with_library(&[("KEEPALIVE_USER_TIMEOUT", "2500")], &["tcp4"]);
    assert_eq!(plain[0].int("user_timeout"), 2500);
    let off = with_library(&[("KEEPALIVE_USER_TIMEOUT", "off")], &["tcp4"]);
    assert_eq!(off[0].int("user_timeout"), 0);
    let auto = with_library(
        &[TIMINGS.as_slice(), &[("KEEPALIVE_USER_TIMEOUT", "auto")]].concat(),
        &["tcp4"],
    );
    assert_eq!(auto[0].int("user_timeout"), (61 + 7 * 4) * 1000);
}

#[test]
fn auto_user_timeout_takes_unset_timings_from_the_kernel() {
    let [_, intvl, cnt] = kernel_defaults();
    let auto = with_library(
        &[("KEEPIDLE", "10"), ("KEEPALIVE_USER_TIMEOUT", "auto")],
        &["tcp4"],
    );
    assert_eq!(auto[0].int("user_timeout"), (10 + intvl * cnt) * 1000);
}

#[test]
fn a_refused_option_on_mptcp_leaves_errno_and_the_other_options() {
    // MPTCP sockets refuse TCP_USER_TIMEOUT (ENOPROTOOPT): the failure must stay inside.
    let env = [TIMINGS.as_slice(), &[("KEEPALIVE_USER_TIMEOUT", "5000")]].concat();
    let sockets = with_library(&env, &["mptcp4"]);
    if !support::require(
        sockets[0].int("fd") >= 0,
        "this kernel cannot create MPTCP sockets",
    ) {
        return;
    }
    assert_eq!(sockets[0].int("errno"), SENTINEL);
    assert_eq!(sockets[0].keepalive_options(), [1, 61, 7, 4]);
    assert_eq!(
        sockets[0].get("user_timeout"),
        "-",
        "MPTCP has no TCP_USER_TIMEOUT"
    );
}

/// C promises errno = 0 when main() starts. The library's start-up work (reading the
/// configuration, looking at descriptor 2, which fails when it is closed) must not
/// leave anything there, whatever it logs.
#[test]
fn errno_is_zero_when_main_starts_even_with_standard_error_closed() {
    for (redirect, env) in [
        ("", vec![]),
        ("2>&-", vec![]),
        (
            "2>&-",
            vec![("KEEPIDLE", "bad"), ("KEEPALIVE_LOG", "debug")],
        ),
    ] {
        let script = format!("exec \"$0\" --start-errno tcp4 {redirect}");
        let output = support::run(
            "sh",
            &["-c", &script, support::probe().to_str().unwrap()],
            Some(library()),
            &env,
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.starts_with("start errno=0\n"),
            "{redirect} {env:?}: {stdout}"
        );
        assert!(
            stdout.contains("keepalive=1"),
            "the library was loaded: {stdout}"
        );
    }
}

#[test]
fn failing_socket_calls_return_the_real_result_and_errno() {
    let kinds = ["bad-protocol", "bad-domain"];
    let env = [TIMINGS.as_slice(), &[("KEEPALIVE", "force")]].concat();
    let with = with_library(&env, &kinds);
    let without = without_library(&kinds);
    assert_eq!(with, without);
    for socket in with {
        assert_eq!(socket.int("fd"), -1);
        assert_ne!(
            socket.int("errno"),
            SENTINEL,
            "the kernel's errno, not ours: {socket:?}"
        );
    }
}

/// Runs the probe with one bad value set among good ones, and returns its stderr.
fn warnings_for(var: &str, value: &[u8]) -> (Vec<Socket>, String) {
    let mut command = support::command(support::probe(), Some(library()), &TIMINGS);
    command
        .env(var, OsStr::from_bytes(value))
        .args(["tcp4", "tcp6", "udp4"]);
    let output = command.output().expect("probe runs");
    assert!(output.status.success(), "the program still runs");
    (
        support::parse_probe(&output.stdout),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn each_bad_value_gets_one_warning_naming_variable_value_and_grammar() {
    let cases: [(&str, &[u8], &str); 12] = [
        (
            "KEEPIDLE",
            b"abc",
            "KEEPIDLE=\"abc\" is not valid; accepted: whole seconds from 1 to 32767",
        ),
        (
            "KEEPIDLE",
            b"",
            "KEEPIDLE=\"\" is empty; accepted: whole seconds",
        ),
        ("KEEPIDLE", b"0", "KEEPIDLE=\"0\" is out of range;"),
        ("KEEPIDLE", b"32768", "KEEPIDLE=\"32768\" is out of range;"),
        (
            "KEEPIDLE",
            b"4294967326",
            "KEEPIDLE=\"4294967326\" is out of range;",
        ),
        ("KEEPIDLE", b"-5", "KEEPIDLE=\"-5\" is not valid;"),
        ("KEEPIDLE", b"30x", "KEEPIDLE=\"30x\" is not valid;"),
        (
            "KEEPINTVL",
            b"\xff\xfe",
            "KEEPINTVL=\"\\xff\\xfe\" is not valid;",
        ),
        (
            "KEEPCNT",
            b"128",
            "KEEPCNT=\"128\" is out of range; accepted: a whole number from 1 to 127; the kernel's value applies",
        ),
        (
            "KEEPALIVE",
            b"yes",
            "KEEPALIVE=\"yes\" is not valid; accepted: on, off, skip or force (any case); keepalive stays on",
        ),
        (
            "KEEPALIVE_USER_TIMEOUT",
            b"soon",
            "KEEPALIVE_USER_TIMEOUT=\"soon\" is not valid; accepted: milliseconds from 1 to 2147483647",
        ),
        (
            "KEEPALIVE_LOG",
            b"loud",
            "KEEPALIVE_LOG=\"loud\" is not valid; accepted: off, error, warn, info or debug (any case); logging stays at warn",
        ),
    ];
    for (var, value, expected) in cases {
        let (sockets, stderr) = warnings_for(var, value);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "exactly one warning for {var}, whatever the number of sockets: {stderr}"
        );
        assert!(
            lines[0].starts_with(&format!("libkeepalive: {expected}")),
            "{var}: got {stderr}"
        );
        // The program ran, and the settings that were valid still apply.
        let tcp4 = &sockets[0];
        assert_eq!(tcp4.int("keepalive"), 1, "{var}");
        if var != "KEEPINTVL" {
            assert_eq!(tcp4.int("intvl"), 7, "{var}: other settings still apply");
        }
    }
}

#[test]
fn a_refused_timing_leaves_the_kernel_value() {
    let (sockets, _) = warnings_for("KEEPIDLE", b"40000");
    let [idle, _, _] = kernel_defaults();
    assert_eq!(sockets[0].options(), [1, idle, 7, 4, 0]);
}

#[test]
fn several_bad_values_get_one_warning_each() {
    let env = [("KEEPIDLE", "x"), ("KEEPINTVL", "0"), ("KEEPCNT", "")];
    let (_, stderr) = probe_sockets(Some(library()), &env, &["tcp4", "tcp6"]);
    let vars: Vec<&str> = stderr
        .lines()
        .map(|l| l.split('=').next().unwrap())
        .collect();
    assert_eq!(
        vars,
        [
            "libkeepalive: KEEPIDLE",
            "libkeepalive: KEEPINTVL",
            "libkeepalive: KEEPCNT"
        ],
        "{stderr}"
    );
}

#[test]
fn log_levels_choose_what_is_written() {
    let stderr_at = |level: &str| {
        let env = [
            ("KEEPIDLE", "bad"),
            ("KEEPCNT", "3"),
            ("KEEPALIVE_LOG", level),
        ];
        probe_sockets(Some(library()), &env, &["tcp4", "udp4"]).1
    };
    assert_eq!(stderr_at("off"), "");
    assert_eq!(
        stderr_at("error"),
        "",
        "a bad value is a warning, not an error"
    );
    let warn = stderr_at("warn");
    assert_eq!(warn.lines().count(), 1);
    assert!(warn.starts_with("libkeepalive: KEEPIDLE=\"bad\" is not valid"));
    let info = stderr_at("INFO");
    assert_eq!(info.lines().count(), 2, "{info}");
    assert!(
        info.lines().nth(1).unwrap().contains(
            ": keepalive on, idle kernel's, interval kernel's, count 3, user timeout unset"
        ),
        "{info}"
    );
    let debug = stderr_at("debug");
    let per_socket: Vec<&str> = debug.lines().skip(2).collect();
    assert_eq!(
        per_socket,
        [
            "libkeepalive: fd 3: SO_KEEPALIVE=1",
            "libkeepalive: fd 3: TCP_KEEPCNT=3"
        ],
        "{debug}"
    );
}

#[test]
fn debug_logging_reports_a_refused_option_and_force_replacements() {
    let env = [
        ("KEEPALIVE", "force"),
        ("KEEPIDLE", "9"),
        ("KEEPALIVE_USER_TIMEOUT", "500"),
        ("KEEPALIVE_LOG", "debug"),
    ];
    let (sockets, stderr) = probe_sockets(
        Some(library()),
        &env,
        &["--own-timings", "15,5,3", "mptcp4"],
    );
    if !support::require(
        sockets[0].int("fd") >= 0,
        "this kernel cannot create MPTCP sockets",
    ) {
        return;
    }
    assert!(
        stderr.contains("fd 3: TCP_USER_TIMEOUT=500 failed, errno 92"),
        "{stderr}"
    );
    assert!(
        stderr.contains("fd 3: program's TCP_KEEPIDLE replaced by 9 (KEEPALIVE=force)"),
        "{stderr}"
    );
    assert_eq!(sockets[0].int("errno"), SENTINEL);
}

/// An unmodified python3 client connects to a listener in this (unpreloaded) test
/// process and reports its socket's options.
#[test]
fn an_unmodified_python_client_gets_keepalive() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let script = "import socket, sys\n\
        s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n\
        g = lambda level, opt: s.getsockopt(level, opt)\n\
        print(g(socket.SOL_SOCKET, socket.SO_KEEPALIVE), g(6, socket.TCP_KEEPIDLE), g(6, socket.TCP_KEEPINTVL), g(6, socket.TCP_KEEPCNT), g(6, socket.TCP_USER_TIMEOUT))\n";
    let env = [TIMINGS.as_slice(), &[("KEEPALIVE_USER_TIMEOUT", "auto")]].concat();
    let output = support::run(
        support::python3(),
        &["-c", script, &port],
        Some(library()),
        &env,
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "1 61 7 4 89000"
    );
    assert!(output.stderr.is_empty());
}

/// A python3 server under the library: the socket it accepts inherits the options
/// from its listener, in the kernel, with no accept() interposed.
#[test]
fn sockets_accepted_by_a_covered_listener_inherit_the_options() {
    let script = "import socket\n\
        l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()\n\
        print(l.getsockname()[1], flush=True)\n\
        c, _ = l.accept()\n\
        print(*(c.getsockopt(lvl, opt) for lvl, opt in [(socket.SOL_SOCKET, socket.SO_KEEPALIVE), (6, socket.TCP_KEEPIDLE), (6, socket.TCP_KEEPINTVL), (6, socket.TCP_KEEPCNT)]))\n";
    let mut server = support::command(support::python3(), Some(library()), &TIMINGS)
        .args(["-c", script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let port: u16 = lines.next().unwrap().unwrap().trim().parse().unwrap();
    let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "1 61 7 4");
    assert!(server.wait().unwrap().success());
}

#[test]
fn exports_exactly_socket_and_setsockopt() {
    let output = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(library())
        .output()
        .expect("nm (binutils)");
    let mut names: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().last().map(str::to_string))
        .collect();
    names.sort();
    assert_eq!(names, ["setsockopt", "socket"]);
}

/// Nothing in the shipped library can panic: the optimiser removed every panicking
/// path, so the panic handler and its abort() are not even linked in. A change that
/// brings one back (an unchecked index, an unwrap) fails here.
#[test]
fn the_shipped_library_has_no_panic_path() {
    let symbols = Command::new("nm")
        .arg(library())
        .output()
        .expect("nm (binutils)");
    let symbols = String::from_utf8_lossy(&symbols.stdout);
    assert!(
        symbols.lines().any(|l| l.ends_with(" T socket")),
        "the symbol table is there to read:\n{symbols}"
    );
    let panicking: Vec<&str> = symbols
        .lines()
        .filter(|l| l.to_lowercase().contains("panic"))
        .collect();
    assert!(
        panicking.is_empty(),
        "panic paths in the library: {panicking:?}"
    );
    assert!(
        !symbols.lines().any(|l| l.contains(" U abort")),
        "abort() is imported"
    );
}

#[test]
fn depends_on_libc_alone_with_the_debian_soname() {
    let output = Command::new("readelf")
        .arg("-d")
        .arg(library())
        .output()
        .expect("readelf (binutils)");
    let dynamic = String::from_utf8_lossy(&output.stdout);
    let needed: Vec<&str> = dynamic.lines().filter(|l| l.contains("(NEEDED)")).collect();
    assert_eq!(needed.len(), 1, "{dynamic}");
    assert!(needed[0].contains("[libc.so.6]"), "{dynamic}");
    assert!(
        dynamic.contains("Library soname: [libkeepalive.so.0]"),
        "{dynamic}"
    );

    let ldd = Command::new("ldd").arg(library()).output().expect("ldd");
    let ldd = String::from_utf8_lossy(&ldd.stdout);
    for line in ldd.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        assert!(
            ["linux-vdso.so.1", "libc.so.6"].contains(&name) || name.contains("ld-linux"),
            "unexpected run-time dependency {name}:\n{ldd}"
        );
    }
    assert!(!ldd.contains("libgcc_s"));
}
