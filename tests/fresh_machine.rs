//! The README's first command on a fresh machine: scripts/demo.sh runs with a PATH
//! that holds only the commands such a machine has (tests/support/fresh-machine/
//! commands.txt, which says where the list comes from), so no nft, socat or nc, and
//! must succeed, print what it measured, and leave nothing behind (no server, no
//! network namespace: tests/support/leftovers.rs).

#[path = "support/leftovers.rs"]
mod leftovers;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{TempDir, root};

/// Where each listed command is looked for: the Rust toolchain's commands in cargo's
/// bin directory, the rest in the system's directories (never /usr/local or a pyenv
/// shim: Debian's own python3 is what a fresh machine runs).
fn locate(name: &str, rust: bool) -> Option<PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    let dirs: Vec<PathBuf> = if rust {
        cargo_home.into_iter().map(|h| h.join("bin")).collect()
    } else {
        ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
            .map(PathBuf::from)
            .to_vec()
    };
    dirs.into_iter()
        .map(|dir| dir.join(name))
        .find(|path| path.exists())
}

/// A directory of links to the listed commands found on this machine.
fn fresh_path(dir: &Path) -> Vec<String> {
    let list = std::fs::read_to_string(root().join("tests/support/fresh-machine/commands.txt"))
        .expect("the list of a fresh machine's commands");
    let mut section = "";
    let mut linked = Vec::new();
    for line in list.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if let Some(path) = locate(line, section == "[rust]") {
            std::os::unix::fs::symlink(&path, dir.join(line)).expect("link a command");
            linked.push(line.to_string());
        }
    }
    linked
}

#[test]
fn the_demo_runs_with_only_a_fresh_machines_commands() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let is_root = unsafe { libc::geteuid() } == 0;
    let rootless = Command::new("unshare")
        .args(["-rn", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !support::require(
        is_root || rootless,
        "the demo needs root or unprivileged user namespaces (unshare -rn)",
    ) {
        return;
    }
    support::library(); // built here, so that the demo's own build has nothing to do
    let bin = TempDir::new("fresh-path");
    let linked = fresh_path(&bin.0);
    for needed in [
        "bash", "cargo", "cc", "python3", "ip", "ss", "unshare", "nsenter",
    ] {
        assert!(
            linked.iter().any(|c| c == needed),
            "{needed} is listed but not found here"
        );
    }
    for absent in ["nft", "socat", "nc", "tcpdump", "redis-cli", "clang", "go"] {
        assert!(!bin.0.join(absent).exists(), "{absent} is on a fresh PATH");
    }

    let mut command = Command::new(root().join("scripts/demo.sh"));
    command
        .env_clear()
        .env("PATH", &bin.0)
        .env("DEMO_WAIT", "5");
    for name in [
        "HOME",
        "CARGO_HOME",
        "RUSTUP_HOME",
        "RUSTUP_TOOLCHAIN",
        "CARGO_TARGET_DIR",
    ] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    let Some(watch) = leftovers::Watch::new() else {
        return;
    };
    let output = watch.run(command, "fresh-machine", Duration::from_secs(600));
    watch.assert_clean("scripts/demo.sh on a fresh machine's PATH", &output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the demo failed on a fresh machine's PATH: {:?}\n{stdout}\n{stderr}",
        output.status
    );
    print!("{stdout}");
    assert!(stdout.contains("Client: python3 "), "{stdout}");
    assert!(
        stdout.contains("s; the demo gives up on it."),
        "without the library the client must still wait: {stdout}"
    );
    // The measured result: the client under the library gave up, about 4 s after the
    // server vanished (1 s idle + 3 probes 1 s apart), told by the kernel why.
    let line = stdout
        .lines()
        .find(|l| l.contains("the client gave up after"))
        .unwrap_or_else(|| panic!("no measured result:\n{stdout}"));
    let seconds: f64 = line
        .split("gave up after ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no time in {line:?}"));
    assert!((2.5..=6.0).contains(&seconds), "{line}");
    assert!(line.contains("(Connection timed out)"), "{line}");
}
