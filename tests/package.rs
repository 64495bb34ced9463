//! The Debian package, as a fleet would meet it: built by scripts/package.sh (cargo-deb,
//! lintian without errors), installed with dpkg over Debian's C libkeepalive0, which
//! it replaces, used through the installed paths by a real TCP client whose socket
//! options are read from the kernel, then purged, leaving nothing behind. Needs root
//! (dpkg); the machine's packages are put back as they were, also when the test fails.

#[path = "support/c_library.rs"]
mod c_library;
#[path = "support/leftovers.rs"]
mod leftovers;
#[allow(dead_code)]
#[path = "support/netns.rs"]
mod netns;
mod support;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use netns::tcp_socket_options;
use support::{python3, root};

const PACKAGE: &str = "libkeepalive";
const C_PACKAGE: &str = "libkeepalive0";
/// What existing units and images preload: libkeepalive0's path, kept by our package.
const DEBIAN_PATH: &str = "/usr/lib/libkeepalive.so";
const MULTIARCH_LIBRARY: &str = "/usr/lib/x86_64-linux-gnu/libkeepalive.so.0";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// dpkg-query's status of a package: "install ok installed", or "" when dpkg does
/// not know it.
fn status(package: &str) -> String {
    let output = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .expect("dpkg-query runs");
    text(&output.stdout)
}

fn installed(package: &str) -> bool {
    status(package) == "install ok installed"
}

/// Runs dpkg, waiting (up to two minutes) while another dpkg or apt holds its lock:
/// other work on the machine may be installing packages at the same time.
fn dpkg(args: &[&str]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let output = Command::new("dpkg")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .expect("dpkg runs");
        let locked = text(&output.stderr).contains("lock");
        if output.status.success() || !locked || Instant::now() > deadline {
            return output;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn dpkg_ok(args: &[&str]) {
    let output = dpkg(args);
    assert!(
        output.status.success(),
        "dpkg {args:?} failed:\n{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// Puts the machine's packages back as they were when dropped: ours purged, and
/// libkeepalive0 installed again only if it was before.
struct Restore {
    c_package_was_installed: bool,
    c_deb: PathBuf,
}

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = dpkg(&["--purge", PACKAGE]);
        if self.c_package_was_installed {
            let _ = dpkg(&["-i", &self.c_deb.to_string_lossy()]);
        } else {
            let _ = dpkg(&["--purge", C_PACKAGE]);
        }
    }
}

/// Builds the package with scripts/package.sh and returns its path, after checking
/// that package.sh left nothing running.
fn build_package(watch: leftovers::Watch) -> PathBuf {
    let command = Command::new(root().join("scripts/package.sh"));
    let output = watch.run(command, "package", std::time::Duration::from_secs(1800));
    watch.assert_clean("scripts/package.sh", &output);
    assert!(
        output.status.success(),
        "package.sh failed:\n{}",
        text(&output.stderr)
    );
    let deb = PathBuf::from(text(&output.stdout).trim());
    assert!(deb.is_file(), "package.sh printed {}", deb.display());
    deb
}

/// A python3 client (tests/support/net/client.py) connected to a listener on
/// loopback, started with `prefix` before it and `env`, waiting in recv().
fn connected_client(prefix: &[&str], env: &[(&str, &str)]) -> (Child, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen on loopback");
    let port = listener
        .local_addr()
        .expect("an address")
        .port()
        .to_string();
    let script = root().join("tests/support/net/client.py");
    let python = python3();
    let mut argv: Vec<&std::ffi::OsStr> = prefix.iter().map(|a| a.as_ref()).collect();
    argv.extend([
        python.as_os_str(),
        script.as_os_str(),
        "127.0.0.1".as_ref(),
        port.as_ref(),
    ]);
    let mut command = support::command(argv[0], None, env);
    command.args(&argv[1..]).stdout(Stdio::piped());
    let mut child = command.spawn().expect("the client starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the client's first line");
    assert_eq!(line.trim(), "connected", "the client did not connect");
    (child, listener)
}

/// The kernel's view of the client's one connected TCP socket.
fn options_of(mut client: Child) -> [i64; 5] {
    let options = tcp_socket_options(client.id());
    let _ = client.kill();
    let _ = client.wait();
    assert_eq!(options.len(), 1, "one connected TCP socket: {options:?}");
    options[0]
}

/// Every file and link of the package, as absolute paths (directories left out).
fn package_contents(deb: &Path) -> Vec<PathBuf> {
    let output = Command::new("dpkg-deb")
        .arg("-c")
        .arg(deb)
        .output()
        .expect("dpkg-deb runs");
    assert!(output.status.success());
    text(&output.stdout)
        .lines()
        .filter(|line| !line.starts_with('d'))
        .map(|line| {
            let path = line.split_whitespace().nth(5).expect("a path column");
            PathBuf::from(path.trim_start_matches('.'))
        })
        .collect()
}

#[test]
fn the_package_replaces_libkeepalive0_serves_its_path_and_leaves_nothing_when_purged() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let is_root = unsafe { libc::geteuid() } == 0;
    if !support::require(is_root, "installing a package with dpkg needs root") {
        return;
    }
    let Some(c_deb) = c_library::package() else {
        return;
    };
    let Some(watch) = leftovers::Watch::new() else {
        return;
    };
    let deb = build_package(watch);

    // lintian, as package.sh ran it: no errors.
    let lintian = Command::new("lintian")
        .args(["--fail-on", "error"])
        .arg(&deb)
        .output()
        .expect("lintian is installed (scripts/test.sh installs it)");
    assert!(
        lintian.status.success(),
        "lintian found errors:\n{}",
        text(&lintian.stdout)
    );

    let _restore = Restore {
        c_package_was_installed: installed(C_PACKAGE),
        c_deb: c_deb.to_path_buf(),
    };
    assert!(
        !installed(PACKAGE),
        "{PACKAGE} is already installed on this machine; purge it first"
    );

    // Debian's C library first, as on a machine that used it; then ours over it.
    dpkg_ok(&["-i", &c_deb.to_string_lossy()]);
    assert!(installed(C_PACKAGE));
    dpkg_ok(&["-i", &deb.to_string_lossy()]);
    assert!(installed(PACKAGE));
    assert!(
        !installed(C_PACKAGE),
        "libkeepalive0 is still installed: {}",
        status(C_PACKAGE)
    );

    // The old path is ours now, through the soname link to the multiarch library.
    let resolved = std::fs::canonicalize(DEBIAN_PATH).expect("/usr/lib/libkeepalive.so exists");
    assert_eq!(
        resolved,
        Path::new("/usr/lib/x86_64-linux-gnu/libkeepalive.so.0.4.0")
    );
    assert_eq!(std::fs::canonicalize(MULTIARCH_LIBRARY).unwrap(), resolved);
    let readelf = Command::new("readelf")
        .arg("-d")
        .arg(&resolved)
        .output()
        .unwrap();
    assert!(text(&readelf.stdout).contains("Library soname: [libkeepalive.so.0]"));
    for path in [
        "/usr/bin/keepalive",
        "/usr/share/man/man1/keepalive.1.gz",
        "/usr/share/man/man1/keepalive-inspect.1.gz",
        "/usr/share/man/man1/keepalive-apply.1.gz",
        "/usr/share/bash-completion/completions/keepalive",
        "/usr/share/zsh/vendor-completions/_keepalive",
        "/usr/share/fish/vendor_completions.d/keepalive.fish",
        "/usr/share/doc/libkeepalive/examples/systemd/keepalive.conf",
        "/usr/share/doc/libkeepalive/copyright",
    ] {
        assert!(Path::new(path).exists(), "{path} is not installed");
    }

    // A line written for the C library: LD_PRELOAD=/usr/lib/libkeepalive.so.
    let (client, _listener) = connected_client(
        &[],
        &[
            ("LD_PRELOAD", DEBIAN_PATH),
            ("KEEPIDLE", "61"),
            ("KEEPINTVL", "7"),
            ("KEEPCNT", "4"),
            ("KEEPALIVE_USER_TIMEOUT", "auto"),
        ],
    );
    assert_eq!(options_of(client), [1, 61, 7, 4, 89_000]);

    // The installed command, which finds the installed library by itself.
    let (client, _listener) = connected_client(
        &[
            "/usr/bin/keepalive",
            "--idle",
            "62",
            "--interval",
            "8",
            "--count",
            "5",
            "--user-timeout",
            "30s",
            "--",
        ],
        &[],
    );
    assert_eq!(options_of(client), [1, 62, 8, 5, 30_000]);

    // Purged, it leaves nothing: no file, no link, no dpkg record.
    let contents = package_contents(&deb);
    assert!(contents.iter().any(|p| p == Path::new(DEBIAN_PATH)));
    dpkg_ok(&["--purge", PACKAGE]);
    assert_eq!(status(PACKAGE), "", "dpkg still knows {PACKAGE}");
    let left: Vec<&PathBuf> = contents
        .iter()
        .filter(|p| p.symlink_metadata().is_ok())
        .collect();
    assert!(left.is_empty(), "left behind after purge: {left:?}");
    for dir in [
        "/usr/share/doc/libkeepalive",
        "/usr/lib/x86_64-linux-gnu/libkeepalive.so.0",
    ] {
        assert!(!Path::new(dir).exists(), "{dir} is left behind");
    }
}
