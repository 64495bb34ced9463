//! `keepalive -- PROGRAM` warns that the preloaded library cannot reach PROGRAM exactly
//! when its exec runs in secure mode (AT_SECURE), the only case in which ld.so ignores
//! LD_PRELOAD: copies of the probe with set-user-ID, set-group-ID bits and file
//! capabilities, run by root and by uid 65534, each checked twice: whether the command
//! warned, and whether the library really loaded (the probe's TCP socket has
//! keepalive on). The warning must be given exactly when the library did not load.

#[path = "support/cli.rs"]
mod cli;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use cli::{clean, is_root, keepalive, text};
use support::{TempDir, library, probe, require};

const NOBODY: u32 = 65534;

/// A version-2 security.capability value: CAP_NET_RAW permitted and effective
/// (what `setcap cap_net_raw+ep` writes).
const CAP_NET_RAW_EP: [u8; 20] = {
    const MAGIC: u32 = 0x0200_0000 | 1; // VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
    const PERMITTED: u32 = 1 << 13; // CAP_NET_RAW
    let m = MAGIC.to_le_bytes();
    let p = PERMITTED.to_le_bytes();
    [
        m[0], m[1], m[2], m[3], p[0], p[1], p[2], p[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]
};

/// One copy of the probe and who runs it.
struct Case {
    what: &'static str,
    /// None: root runs it; Some(uid): `setpriv` with that real and effective uid and
    /// gid, and no supplementary groups.
    caller: Option<u32>,
    owner: (u32, u32),
    mode: u32,
    file_caps: bool,
    /// Whether the kernel runs the exec in secure mode.
    secure: bool,
}

const CASES: [Case; 12] = [
    Case {
        what: "root runs a setuid-root program",
        caller: None,
        owner: (0, 0),
        mode: 0o4755,
        file_caps: false,
        secure: false,
    },
    Case {
        what: "root runs a program setuid to nobody",
        caller: None,
        owner: (NOBODY, 0),
        mode: 0o4755,
        file_caps: false,
        secure: true,
    },
    Case {
        what: "root runs a program setgid to root's own group",
        caller: None,
        owner: (0, 0),
        mode: 0o2755,
        file_caps: false,
        secure: false,
    },
    Case {
        what: "root runs a program setgid to nogroup",
        caller: None,
        owner: (0, NOBODY),
        mode: 0o2755,
        file_caps: false,
        secure: true,
    },
    Case {
        what: "root runs a program with the setgid bit but no group execute bit",
        caller: None,
        owner: (0, NOBODY),
        mode: 0o2745,
        file_caps: false,
        secure: false,
    },
    Case {
        what: "root runs a program with file capabilities",
        caller: None,
        owner: (0, 0),
        mode: 0o755,
        file_caps: true,
        secure: false,
    },
    Case {
        what: "nobody runs a setuid-root program",
        caller: Some(NOBODY),
        owner: (0, 0),
        mode: 0o4755,
        file_caps: false,
        secure: true,
    },
    Case {
        what: "nobody runs a program setuid to itself",
        caller: Some(NOBODY),
        owner: (NOBODY, NOBODY),
        mode: 0o4755,
        file_caps: false,
        secure: false,
    },
    Case {
        what: "nobody runs a program setgid to its own group",
        caller: Some(NOBODY),
        owner: (0, NOBODY),
        mode: 0o2755,
        file_caps: false,
        secure: false,
    },
    Case {
        what: "nobody runs a program setgid to root's group",
        caller: Some(NOBODY),
        owner: (0, 0),
        mode: 0o2755,
        file_caps: false,
        secure: true,
    },
    Case {
        what: "nobody runs a program with file capabilities",
        caller: Some(NOBODY),
        owner: (0, 0),
        mode: 0o755,
        file_caps: true,
        secure: true,
    },
    Case {
        what: "nobody runs a plain program",
        caller: Some(NOBODY),
        owner: (0, 0),
        mode: 0o755,
        file_caps: false,
        secure: false,
    },
];

/// Whether set-user-ID bits take effect on the file system of `dir` (not nosuid).
fn setuid_allowed(dir: &Path) -> bool {
    rustix::fs::statvfs(dir)
        .map(|fs| !fs.f_flag.contains(rustix::fs::StatVfsMountFlags::NOSUID))
        .unwrap_or(false)
}

/// A copy of the probe in `dir` with `case`'s owner, mode and capabilities.
fn install(dir: &Path, index: usize, case: &Case) -> PathBuf {
    let path = dir.join(format!("probe-{index}"));
    std::fs::copy(probe(), &path).expect("copy the probe");
    std::os::unix::fs::chown(&path, Some(case.owner.0), Some(case.owner.1)).expect("chown");
    // After chown, which clears the set-ID bits.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(case.mode)).expect("chmod");
    if case.file_caps {
        rustix::fs::setxattr(
            &path,
            "security.capability",
            &CAP_NET_RAW_EP,
            rustix::fs::XattrFlags::empty(),
        )
        .expect("set file capabilities (needs CAP_SETFCAP)");
    }
    path
}

/// (warned, library loaded) for `case`'s program run under `keepalive --`.
fn run(program: &Path, case: &Case) -> (bool, bool, String) {
    let mut command = match case.caller {
        None => clean(keepalive()),
        Some(uid) => {
            let mut command = clean("setpriv");
            command
                .arg(format!("--reuid={uid}"))
                .arg(format!("--regid={uid}"))
                .arg("--clear-groups")
                .arg(keepalive());
            command
        }
    };
    command
        .env("KEEPALIVE_LIBRARY", library())
        .arg("--")
        .arg(program)
        .arg("tcp4");
    let output = command.output().expect("keepalive starts");
    let stderr = text(&output.stderr);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{}: {:?}\n{stdout}{stderr}",
        case.what,
        output.status
    );
    let warned = stderr.contains("warning") && stderr.contains("LD_PRELOAD");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("kind=tcp4 "))
        .unwrap_or_else(|| panic!("{}: no tcp4 line in {stdout}{stderr}", case.what));
    let loaded = line.split_whitespace().any(|f| f == "keepalive=1");
    (warned, loaded, format!("{stdout}{stderr}"))
}

#[test]
fn the_warning_is_given_exactly_when_the_exec_is_in_secure_mode() {
    if !require(
        is_root(),
        "making set-user-ID copies owned by others needs root",
    ) {
        return;
    }
    let dir = TempDir::new("reach-setid");
    if !require(
        setuid_allowed(&dir.0),
        "the target directory is on a nosuid file system",
    ) {
        return;
    }
    if !require(
        Command::new("setpriv").arg("--version").output().is_ok(),
        "setpriv (package util-linux) is not installed",
    ) {
        return;
    }
    // Others must reach the copies to run them as nobody.
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let library_dir = library();
    let mut wrong = Vec::new();
    for (index, case) in CASES.iter().enumerate() {
        let program = install(&dir.0, index, case);
        let (warned, loaded, output) = run(&program, case);
        // The test's own premise, checked against the kernel: the library loads
        // exactly when the exec is not in secure mode.
        assert_eq!(
            loaded,
            !case.secure,
            "{}: the library {} ({}):\n{output}",
            case.what,
            if loaded { "loaded" } else { "did not load" },
            library_dir.display()
        );
        if warned != case.secure {
            wrong.push(format!(
                "{}: {} (mode {:o}, owner {}:{})",
                case.what,
                if warned {
                    "warned, but the library loaded"
                } else {
                    "no warning, but the library did not load"
                },
                case.mode,
                case.owner.0,
                case.owner.1
            ));
        }
    }
    assert!(wrong.is_empty(), "wrong warnings:\n{}", wrong.join("\n"));
}
