//! `keepalive [OPTIONS] -- COMMAND`: the probe runs under the command and reports what
//! the kernel holds for its sockets; bad options, missing commands and a missing
//! library each get their message and exit status.

#[path = "support/cli.rs"]
mod cli;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Output;

use cli::{TIMING_OPTIONS, clean, keepalive, keepalive_command, run_keepalive, text};
use keepalive_config::Var;
use support::{TempDir, library, probe, require};

/// One report line of the probe, as `key=value` pairs.
fn probe_fields(output: &Output, kind: &str) -> Vec<(String, String)> {
    assert!(
        output.status.success(),
        "probe failed: {:?} {}",
        output.status,
        text(&output.stderr)
    );
    let stdout = text(&output.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("kind={kind} ")))
        .unwrap_or_else(|| panic!("no {kind} line in {stdout}"));
    line.split_whitespace()
        .filter_map(|f| f.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// keepalive, idle, intvl, cnt, user_timeout as the probe read them.
fn options(output: &Output, kind: &str) -> [String; 5] {
    let fields = probe_fields(output, kind);
    ["keepalive", "idle", "intvl", "cnt", "user_timeout"].map(|key| {
        fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .expect(key)
    })
}

fn run_probe(options: &[&str], kinds: &[&str]) -> Output {
    let probe = probe();
    let mut args: Vec<&str> = options.to_vec();
    args.push("--");
    args.push(probe.to_str().unwrap());
    args.extend(kinds);
    run_keepalive(&args)
}

#[test]
fn the_options_reach_every_tcp_socket_of_the_command() {
    let output = run_probe(&TIMING_OPTIONS, &["tcp4", "tcp6", "udp4"]);
    for kind in ["tcp4", "tcp6"] {
        assert_eq!(
            options(&output, kind),
            ["1", "7", "3", "4", "9000"].map(String::from),
            "{kind}"
        );
    }
    assert_eq!(options(&output, "udp4")[0], "0", "UDP is left alone");
}

#[test]
fn durations_take_units_and_auto_user_timeout_follows_them() {
    let output = run_probe(
        &[
            "--idle",
            "1m30s",
            "--interval",
            "2m",
            "--count",
            "2",
            "--user-timeout",
            "auto",
        ],
        &["tcp4"],
    );
    let expected_timeout = ((90 + 120 * 2) * 1000).to_string();
    assert_eq!(
        options(&output, "tcp4"),
        ["1", "90", "120", "2", expected_timeout.as_str()].map(String::from)
    );
}

#[test]
fn mode_skip_applies_timings_but_leaves_keepalive_off() {
    let output = run_probe(&["--mode", "skip", "--idle", "11"], &["tcp4"]);
    let got = options(&output, "tcp4");
    assert_eq!((got[0].as_str(), got[1].as_str()), ("0", "11"));
}

#[test]
fn log_level_reaches_the_library() {
    let quiet = run_probe(&["--idle", "5"], &["tcp4"]);
    let chatty = run_probe(&["--idle", "5", "--log", "debug"], &["tcp4"]);
    assert!(
        !text(&quiet.stderr).contains("libkeepalive:"),
        "{}",
        text(&quiet.stderr)
    );
    assert!(
        text(&chatty.stderr).contains("libkeepalive:"),
        "{}",
        text(&chatty.stderr)
    );
}

#[test]
fn every_bad_value_is_refused_with_the_library_words_before_anything_runs() {
    let cases: [(&str, &str, Var, &str); 9] = [
        ("--idle", "0", Var::Idle, "is out of range"),
        ("--idle", "abc", Var::Idle, "is not valid"),
        ("--idle", "", Var::Idle, "is empty"),
        ("--interval", "32768", Var::Interval, "is out of range"),
        ("--count", "128", Var::Count, "is out of range"),
        ("--count", "3s", Var::Count, "is not valid"),
        ("--user-timeout", "0", Var::UserTimeout, "is out of range"),
        ("--mode", "maybe", Var::Mode, "is not valid"),
        ("--log", "trace", Var::Log, "is not valid"),
    ];
    let dir = TempDir::new("bad-values");
    let marker = dir.0.join("ran");
    let touch = format!("touch {}", marker.display());
    for (option, value, var, why) in cases {
        let output = run_keepalive(&[option, value, "--", "sh", "-c", &touch]);
        let stderr = text(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{option} {value:?}: {stderr}"
        );
        let expected = format!("invalid value '{value}' for '{option} ");
        assert!(stderr.contains(&expected), "{option} {value:?}: {stderr}");
        assert!(
            stderr.contains(&format!("{why}; accepted: {}", var.accepted())),
            "{stderr}"
        );
        assert!(!marker.exists(), "{option} {value:?}: the command ran");
    }
}

#[test]
fn a_missing_command_exits_127_and_a_non_executable_one_126() {
    let missing = run_keepalive(&["--", "keepalive-no-such-command"]);
    assert_eq!(missing.status.code(), Some(127));
    assert!(text(&missing.stderr).contains("keepalive-no-such-command: No such file or directory"));

    let dir = TempDir::new("not-executable");
    let script = dir.0.join("script");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    for target in [&script, &dir.0] {
        let output = run_keepalive(&["--", target.to_str().unwrap()]);
        assert_eq!(
            output.status.code(),
            Some(126),
            "{}: {}",
            target.display(),
            text(&output.stderr)
        );
        assert!(
            text(&output.stderr).contains("Permission denied"),
            "{}",
            text(&output.stderr)
        );
    }
}

#[test]
fn no_command_at_all_is_a_usage_error() {
    let output = run_keepalive(&["--idle", "5"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("COMMAND"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn the_command_replaces_keepalive_so_pid_status_and_signals_pass_through() {
    let mut child = keepalive_command(&["--", "sh", "-c", "echo $$; exit 7"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("keepalive starts");
    let pid = child.id();
    let output = std::mem::take(&mut child.stdout)
        .map(std::io::read_to_string)
        .unwrap()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        output.trim(),
        pid.to_string(),
        "the shell runs in keepalive's own process"
    );
    assert_eq!(status.code(), Some(7));

    let killed = run_keepalive(&["--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(killed.status.signal(), Some(15), "{:?}", killed.status);
}

#[test]
fn an_existing_ld_preload_is_kept_after_the_library() {
    let other = "/lib/x86_64-linux-gnu/libm.so.6";
    if !require(
        Path::new(other).exists(),
        "libm.so.6 at the Debian multiarch path",
    ) {
        return;
    }
    for existing in [other.to_string(), format!("{other} {other}")] {
        let output = keepalive_command(&["--", "sh", "-c", "printf %s \"$LD_PRELOAD\""])
            .env("LD_PRELOAD", &existing)
            .output()
            .unwrap();
        assert_eq!(
            text(&output.stdout),
            format!("{}:{existing}", library().display())
        );
    }
    let output = keepalive_command(&["--idle", "13", "--", probe().to_str().unwrap(), "tcp4"])
        .env("LD_PRELOAD", other)
        .output()
        .unwrap();
    assert_eq!(options(&output, "tcp4")[..2], ["1", "13"].map(String::from));
}

#[test]
fn a_missing_library_is_named_and_exits_125() {
    let output = keepalive_command(&["--", "true"])
        .env("KEEPALIVE_LIBRARY", "/nonexistent/libkeepalive.so")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(125));
    assert!(text(&output.stderr).contains("KEEPALIVE_LIBRARY=/nonexistent/libkeepalive.so"));

    let dir = TempDir::new("alone");
    let alone = dir.0.join("keepalive");
    std::fs::copy(keepalive(), &alone).unwrap();
    let output = clean(&alone).args(["--", "true"]).output().unwrap();
    // Alone, it falls back to the system's places, which a machine with the library
    // installed has: then it must have found one of those.
    let system = [
        "/usr/local/lib/libkeepalive.so",
        "/usr/lib/x86_64-linux-gnu/libkeepalive.so",
        "/usr/lib/libkeepalive.so",
        "/usr/lib64/libkeepalive.so",
    ];
    if system.iter().any(|path| Path::new(path).exists()) {
        assert!(output.status.success(), "{}", text(&output.stderr));
        return;
    }
    assert_eq!(output.status.code(), Some(125));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("cannot find libkeepalive.so"), "{stderr}");
    for path in system {
        assert!(stderr.contains(path), "{path} not looked in: {stderr}");
    }
}

#[test]
fn the_library_is_found_next_to_the_command_and_in_its_prefix() {
    for (bin, lib) in [("bin", "bin"), ("bin", "lib"), ("bin", "lib64")] {
        let dir = TempDir::new(&format!("layout-{lib}"));
        std::fs::create_dir_all(dir.0.join(bin)).unwrap();
        std::fs::create_dir_all(dir.0.join(lib)).unwrap();
        let command = dir.0.join(bin).join("keepalive");
        std::fs::copy(keepalive(), &command).unwrap();
        std::fs::copy(library(), dir.0.join(lib).join("libkeepalive.so")).unwrap();
        let output = clean(&command)
            .args(["--idle", "17", "--", probe().to_str().unwrap(), "tcp4"])
            .output()
            .unwrap();
        assert_eq!(
            options(&output, "tcp4")[..2],
            ["1", "17"].map(String::from),
            "library in {lib}/"
        );
    }
}

#[test]
fn ld_preload_names_the_link_so_that_an_upgrade_does_not_strand_children() {
    // As the Debian package installs it: libkeepalive.so, a link to the versioned file.
    let dir = TempDir::new("upgrade");
    let (bin, lib) = (dir.0.join("bin"), dir.0.join("lib"));
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&lib).unwrap();
    let command = bin.join("keepalive");
    std::fs::copy(keepalive(), &command).unwrap();
    std::fs::copy(library(), lib.join("libkeepalive.so.0.4.0")).unwrap();
    std::os::unix::fs::symlink("libkeepalive.so.0.4.0", lib.join("libkeepalive.so")).unwrap();
    // An upgrade while COMMAND runs installs a new versioned file, moves the link and
    // removes the old file, as dpkg does; what COMMAND starts afterwards must still
    // load the library.
    let upgrade = format!(
        "cd {} && cp libkeepalive.so.0.4.0 libkeepalive.so.0.4.1 && \
         ln -sfn libkeepalive.so.0.4.1 libkeepalive.so && rm libkeepalive.so.0.4.0 && \
         exec {} tcp4",
        lib.display(),
        probe().display()
    );
    let output = clean(&command)
        .args(["--idle", "17", "--", "sh", "-c", &upgrade])
        .output()
        .unwrap();
    assert!(text(&output.stderr).is_empty(), "{}", text(&output.stderr));
    assert_eq!(options(&output, "tcp4")[..2], ["1", "17"].map(String::from));
}
