//! The network tests' test bed: two network namespaces joined by a veth pair, with
//! IPv4 and IPv6 addresses of their own, programs started inside them, ways to make
//! one side vanish silently, and readings of what the kernel holds (socket options
//! through pidfd_getfd, `ss` timers, the TcpExtTCPKeepAlive counter, the sysctls).
//! Everything a bed creates is removed when it is dropped, also on panic; beds left
//! behind by an interrupted run are removed by the next run.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use crate::support;

pub const CLIENT_V4: &str = "10.213.0.1";
pub const SERVER_V4: &str = "10.213.0.2";
pub const CLIENT_V6: &str = "fd00:6b61::1";
pub const SERVER_V6: &str = "fd00:6b61::2";
const CLIENT_MAC: &str = "02:6b:61:00:00:01";
const SERVER_MAC: &str = "02:6b:61:00:00:02";

/// A fresh namespace's keepalive sysctls (time, intvl, probes), whatever the host says.
pub const NAMESPACE_DEFAULTS: [i64; 3] = [7200, 75, 9];

/// Which end of the veth pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// Prefix of every namespace the tests create: `ka-<pid of the test process>-<n>-<side>`.
const PREFIX: &str = "ka-";

pub struct Bed {
    client: String,
    server: String,
    /// Scratch directory for captures, removed with the bed.
    pub dir: PathBuf,
}

impl Bed {
    /// Builds a bed, or returns None (after `support::require`) where namespaces cannot
    /// be made: the tests need root for `ip netns add`.
    pub fn new() -> Option<Bed> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        if !support::require(
            root,
            "network namespaces with veth pairs need root (ip netns add)",
        ) {
            return None;
        }
        static SWEEP: Once = Once::new();
        SWEEP.call_once(remove_stale_beds);
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let base = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(&base);
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        let bed = Bed {
            client: format!("{base}-c"),
            server: format!("{base}-s"),
            dir,
        };
        for ns in [&bed.client, &bed.server] {
            let made = Command::new("ip")
                .args(["netns", "add", ns])
                .output()
                .is_ok_and(|o| o.status.success());
            if !support::require(
                made,
                &format!("`ip netns add {ns}` failed: no network namespaces here"),
            ) {
                return None;
            }
        }
        ip(&[
            "-n",
            &bed.client,
            "link",
            "add",
            "ka0",
            "address",
            CLIENT_MAC,
            "type",
            "veth",
            "peer",
            "name",
            "ka1",
            "address",
            SERVER_MAC,
            "netns",
            &bed.server,
        ]);
        bed.address(
            Side::Client,
            [CLIENT_V4, CLIENT_V6],
            [SERVER_V4, SERVER_V6],
            SERVER_MAC,
        );
        bed.address(
            Side::Server,
            [SERVER_V4, SERVER_V6],
            [CLIENT_V4, CLIENT_V6],
            CLIENT_MAC,
        );
        bed.assert_default_sysctls();
        Some(bed)
    }

    fn ns(&self, side: Side) -> &str {
        match side {
            Side::Client => &self.client,
            Side::Server => &self.server,
        }
    }

    fn device(side: Side) -> &'static str {
        match side {
            Side::Client => "ka0",
            Side::Server => "ka1",
        }
    }

    /// Gives `side` its addresses, and permanent neighbour entries for the other side:
    /// a first ARP or neighbour solicitation lost while the links come up would delay
    /// the handshake by a second, and the kernel would then base its retransmission
    /// timeout on that round trip, which delays a user timeout's expiry.
    fn address(&self, side: Side, own: [&str; 2], peer: [&str; 2], peer_mac: &str) {
        let (ns, dev) = (self.ns(side), Self::device(side));
        ip(&["-n", ns, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{}/24", own[0]),
            "dev",
            dev,
        ]);
        // nodad: the address is usable at once instead of after duplicate detection.
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{}/64", own[1]),
            "dev",
            dev,
            "nodad",
        ]);
        for address in peer {
            ip(&[
                "-n",
                ns,
                "neigh",
                "replace",
                address,
                "lladdr",
                peer_mac,
                "dev",
                dev,
                "nud",
                "permanent",
            ]);
        }
        ip(&["-n", ns, "link", "set", dev, "up"]);
    }

    /// A command that runs inside `side`'s namespace, with the library's variables
    /// cleared, the library preloaded when `preload`, and `env` set. The program is
    /// killed if the test process dies, so an interrupted run leaves no process behind.
    pub fn command(
        &self,
        side: Side,
        program: impl AsRef<std::ffi::OsStr>,
        preload: bool,
        env: &[(&str, &str)],
    ) -> (Command, File) {
        let library = preload.then(support::library);
        let mut command = support::command(program, library, env);
        let netns =
            File::open(format!("/run/netns/{}", self.ns(side))).expect("the namespace exists");
        let fd = netns.as_raw_fd();
        // SAFETY: the closure runs between fork and exec and calls only setns and prctl,
        // which are async-signal-safe system calls. `fd` stays open until the caller
        // drops the returned File, after spawning.
        unsafe {
            command.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0
                    || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        (command, netns)
    }

    /// Starts `program` in `side`'s namespace; its stdout lines are collected with the
    /// time each arrived.
    pub fn spawn(
        &self,
        side: Side,
        label: &str,
        program: impl AsRef<std::ffi::OsStr>,
        args: &[&str],
        preload: bool,
        env: &[(&str, &str)],
    ) -> Proc {
        let (mut command, _netns) = self.command(side, program, preload, env);
        command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Proc::start(label, command)
    }

    /// Starts `program ARGS` in `side`'s namespace and in the cgroup directory `cgroup`,
    /// which a shell joins before it execs the program (same PID).
    #[allow(dead_code)] // the cgroup-mode tests' (cli/tests), not preload mode's
    pub fn spawn_in_cgroup(
        &self,
        side: Side,
        cgroup: &Path,
        label: &str,
        program: &Path,
        args: &[&str],
    ) -> Proc {
        let procs = cgroup.join("cgroup.procs").display().to_string();
        let program = program.display().to_string();
        let mut shell = vec![
            "-c",
            "echo 0 > \"$0\" && exec \"$@\"",
            procs.as_str(),
            program.as_str(),
        ];
        shell.extend(args);
        self.spawn(side, label, "sh", &shell, false, &[])
    }

    /// Runs a helper tool to completion inside `side`'s namespace and returns its stdout.
    pub fn output(&self, side: Side, program: &str, args: &[&str]) -> String {
        let (mut command, _netns) = self.command(side, program, false, &[]);
        let output = command
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program} starts: {e}"));
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `side` vanishes: its link goes down, with no FIN or RST sent to anyone.
    pub fn cut(&self, side: Side) {
        ip(&[
            "-n",
            self.ns(side),
            "link",
            "set",
            "dev",
            Self::device(side),
            "down",
        ]);
    }

    /// `side` vanishes behind an nft rule that drops all it receives and sends. The
    /// links stay up, so the other side's packets still appear in a capture.
    pub fn drop_all(&self, side: Side) {
        let rules = "table inet ka {\n\
                     chain in { type filter hook input priority 0; policy drop; }\n\
                     chain out { type filter hook output priority 0; policy drop; }\n}\n";
        let (mut command, _netns) = self.command(side, "nft", false, &[]);
        let mut child = command
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("nft starts");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(rules.as_bytes())
            .expect("write the rules");
        assert!(
            child.wait().expect("nft ends").success(),
            "nft rejected the rules"
        );
    }

    /// What `ss` says about the TCP connections in both namespaces, for failure messages.
    pub fn connections(&self) -> String {
        [Side::Client, Side::Server]
            .map(|side| format!("{side:?}:\n{}", self.output(side, "ss", &["-tanoi"])))
            .join("")
    }

    /// The namespace's net.ipv4.tcp_keepalive_{time,intvl,probes}.
    pub fn sysctls(&self, side: Side) -> [i64; 3] {
        let files =
            ["time", "intvl", "probes"].map(|n| format!("/proc/sys/net/ipv4/tcp_keepalive_{n}"));
        let text = self.output(side, "cat", &files.each_ref().map(String::as_str));
        let values: Vec<i64> = text
            .split_whitespace()
            .map(|v| v.parse().expect("a number"))
            .collect();
        values.try_into().expect("three values")
    }

    /// The short timings the tests see can only come from the library if the
    /// namespaces keep the kernel's long defaults.
    pub fn assert_default_sysctls(&self) {
        for side in [Side::Client, Side::Server] {
            assert_eq!(
                self.sysctls(side),
                NAMESPACE_DEFAULTS,
                "{side:?} namespace keepalive sysctls"
            );
        }
    }

    /// Keepalive probes sent from `side`'s namespace so far (TcpExtTCPKeepAlive).
    pub fn keepalive_probes(&self, side: Side) -> u64 {
        // -a: absolute values, -s: leave nstat's history file alone, -z: print zeros.
        parse_nstat(
            &self.output(side, "nstat", &["-asz", "TcpExtTCPKeepAlive"]),
            "TcpExtTCPKeepAlive",
        )
    }

    /// The keepalive timer of each TCP connection in `side`'s namespace, by peer port.
    pub fn keepalive_timers(&self, side: Side) -> Vec<(u16, Duration)> {
        parse_ss_timers(&self.output(side, "ss", &["-tnoH"]))
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        for ns in [&self.client, &self.server] {
            remove_namespace(ns);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2) is installed");
    assert!(
        output.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Kills what still runs in the namespace (processes the tests started there), then
/// deletes it, which also removes its end of the veth pair.
fn remove_namespace(ns: &str) {
    if let Ok(output) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
        {
            // SAFETY: kill has no memory preconditions; the pid is one of this run's
            // programs, listed as running inside this run's namespace.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    let _ = Command::new("ip").args(["netns", "del", ns]).output();
}

/// Removes beds whose test process no longer exists (an interrupted earlier run).
fn remove_stale_beds() {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let owner = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next());
        if let Some(pid) =
            owner.filter(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                remove_namespace(name);
                // The bed's scratch directory is named like its namespaces, less the side.
                if let Some((base, _side)) = name.rsplit_once('-') {
                    let _ = std::fs::remove_dir_all(std::env::temp_dir().join(base));
                }
            }
        }
    }
}

/// The value of `name` in `nstat -a` output.
pub fn parse_nstat(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next() == Some(name)).then(|| fields.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no {name} in nstat output:\n{text}"))
}

/// Keepalive timers from `ss -tnoH`: lines like
/// `ESTAB 0 0 10.213.0.1:40000 10.213.0.2:7001 timer:(keepalive,984ms,0)`. The time
/// may read `14sec`, `1min2sec`, `984ms` or nothing (about to fire), taken as zero.
pub fn parse_ss_timers(text: &str) -> Vec<(u16, Duration)> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let port = fields.get(4)?.rsplit(':').next()?.parse().ok()?;
            let timer = fields
                .iter()
                .find_map(|f| f.strip_prefix("timer:(keepalive,"))?;
            Some((port, parse_ss_duration(timer.split(',').next()?)))
        })
        .collect()
}

fn parse_ss_duration(text: &str) -> Duration {
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits]
            .parse()
            .unwrap_or_else(|_| panic!("a number in ss timer {text:?}"));
        rest = &rest[digits..];
        let (unit, scale) = [("min", 60.0), ("sec", 1.0), ("ms", 0.001)]
            .into_iter()
            .find(|(unit, _)| rest.starts_with(unit))
            .unwrap_or_else(|| panic!("a unit in ss timer {text:?}"));
        rest = &rest[unit.len()..];
        total += Duration::from_secs_f64(number * scale);
    }
    total
}

/// SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT and TCP_USER_TIMEOUT of each
/// connected TCP socket of process `pid`, read from outside it: pidfd_open and
/// pidfd_getfd duplicate the process's socket into this one, where getsockopt sees
/// the very options the kernel applies to the connection.
pub fn tcp_socket_options(pid: u32) -> Vec<[i64; 5]> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
    assert!(
        raw >= 0,
        "pidfd_open({pid}): {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw as libc::c_int) };
    let entries =
        std::fs::read_dir(format!("/proc/{pid}/fd")).expect("read the process's descriptors");
    entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let link = std::fs::read_link(entry.path()).ok()?;
            link.to_string_lossy()
                .starts_with("socket:")
                .then_some(())?;
            let target: libc::c_int = entry.file_name().to_str()?.parse().ok()?;
            // SAFETY: pidfd_getfd takes a pidfd, a descriptor number in that process and
            // flags, and returns a new descriptor in this process or -1.
            let copy =
                unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0) };
            assert!(
                copy >= 0,
                "pidfd_getfd({pid}, {target}): {}",
                std::io::Error::last_os_error()
            );
            // SAFETY: `copy` is a fresh descriptor that nothing else owns; dropping it
            // leaves the process's own descriptor and its connection alone.
            let socket = unsafe { OwnedFd::from_raw_fd(copy as libc::c_int) };
            connected_tcp(&socket).then(|| {
                [
                    (libc::SOL_SOCKET, libc::SO_KEEPALIVE),
                    (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
                    (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
                    (libc::IPPROTO_TCP, libc::TCP_KEEPCNT),
                    (libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT),
                ]
                .map(|(level, name)| int_option(&socket, level, name))
            })
        })
        .collect()
}

fn connected_tcp(socket: &OwnedFd) -> bool {
    let domain = int_option(socket, libc::SOL_SOCKET, libc::SO_DOMAIN);
    let tcp = matches!(domain as libc::c_int, libc::AF_INET | libc::AF_INET6)
        && int_option(socket, libc::SOL_SOCKET, libc::SO_TYPE) == libc::SOCK_STREAM as i64
        && int_option(socket, libc::SOL_SOCKET, libc::SO_PROTOCOL) == libc::IPPROTO_TCP as i64;
    // SAFETY: sockaddr_storage is plain data for which all zero bytes are valid.
    let mut address: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut length = std::mem::size_of_val(&address) as libc::socklen_t;
    // SAFETY: address and length are valid for writes, and length is address's size.
    tcp && unsafe { libc::getpeername(socket.as_raw_fd(), (&raw mut address).cast(), &mut length) }
        == 0
}

fn int_option(socket: &OwnedFd, level: libc::c_int, name: libc::c_int) -> i64 {
    let mut value: libc::c_int = 0;
    let mut length = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and length are valid for writes, and length is value's size.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&raw mut value).cast(),
            &mut length,
        )
    };
    assert_eq!(
        rc,
        0,
        "getsockopt({level}, {name}): {}",
        std::io::Error::last_os_error()
    );
    value.into()
}

type Lines = Arc<Mutex<Vec<(Instant, String)>>>;

/// A program started in a namespace. Its output lines are timestamped as they arrive
/// (stderr's marked with a leading `! `); it is killed and reaped when dropped.
pub struct Proc {
    pub label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines,
    pub started: Instant,
    exit: Option<(Instant, ExitStatus)>,
}

/// How often waits look again; small next to the seconds being measured.
const POLL: Duration = Duration::from_millis(20);

impl Proc {
    fn start(label: &str, mut command: Command) -> Proc {
        let started = Instant::now();
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("{label} starts: {e}"));
        let lines = Lines::default();
        collect(child.stdout.take().expect("piped stdout"), "", &lines);
        collect(child.stderr.take().expect("piped stderr"), "! ", &lines);
        let stdin = child.stdin.take();
        Proc {
            label: label.to_string(),
            child,
            stdin,
            lines,
            started,
            exit: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The output lines so far.
    pub fn lines(&self) -> Vec<(Instant, String)> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits up to `timeout` for an output line starting with `prefix`; returns when it
    /// arrived, or panics with what the program said.
    pub fn wait_line(&mut self, prefix: &str, timeout: Duration) -> Instant {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((at, _)) = self
                .lines()
                .into_iter()
                .find(|(_, l)| l.starts_with(prefix))
            {
                return at;
            }
            assert!(
                Instant::now() < deadline && self.poll().is_none(),
                "{}: no line {prefix:?} in {timeout:?}\n{}",
                self.label,
                self.report()
            );
            std::thread::sleep(POLL);
        }
    }

    /// Sends one line to the program's stdin.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}").unwrap_or_else(|e| panic!("{}: write stdin: {e}", self.label));
    }

    /// When the program exited, if it has.
    pub fn poll(&mut self) -> Option<(Instant, ExitStatus)> {
        if self.exit.is_none() {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.exit = Some((Instant::now(), status));
            }
        }
        self.exit
    }

    /// What the program printed, for failure messages.
    pub fn report(&self) -> String {
        let lines: Vec<String> = self.lines().into_iter().map(|(_, l)| l).collect();
        format!(
            "[{}] exit={:?} output={lines:?}",
            self.label,
            self.exit.map(|e| e.1)
        )
    }

    /// Asks the program to end (SIGTERM) and waits for it.
    pub fn terminate(&mut self) {
        if self.poll().is_none() {
            // SAFETY: kill has no memory preconditions; the child has not been reaped
            // (poll saw it running), so its pid is still its own.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
            let status = self.child.wait().expect("wait");
            self.exit = Some((Instant::now(), status));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.poll().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Appends each line read from `pipe`, with `mark` in front, to `lines`.
fn collect(pipe: impl Read + Send + 'static, mark: &'static str, lines: &Lines) {
    let sink = Arc::clone(lines);
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((Instant::now(), format!("{mark}{line}")));
        }
    });
}

/// Polls `procs` until each has exited or `deadline` passes.
pub fn wait_all(procs: &mut [&mut Proc], deadline: Instant) {
    // Polls every process each round (no short-circuit), so each exit time is recorded
    // when it happens.
    while Instant::now() < deadline
        && procs
            .iter_mut()
            .map(|p| p.poll().is_none())
            .fold(false, |a, b| a | b)
    {
        std::thread::sleep(POLL);
    }
}

impl Bed {
    /// Waits until something listens on TCP `port` in `side`'s namespace, for servers
    /// that do not say when they are ready.
    pub fn wait_listening(&self, side: Side, port: u16, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let suffix = format!(":{port}");
        while !self.output(side, "ss", &["-tlnH"]).lines().any(|l| {
            l.split_whitespace()
                .nth(3)
                .is_some_and(|a| a.ends_with(&suffix))
        }) {
            assert!(
                Instant::now() < deadline,
                "nothing listens on port {port} after {timeout:?}"
            );
            std::thread::sleep(POLL);
        }
    }
}
