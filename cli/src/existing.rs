//! `keepalive cgroup attach --existing`: the attachment's settings applied to the TCP
//! connections the cgroup's processes (and its descendants') had already established,
//! which the BPF programs never see. Each process's sockets are reached as `keepalive
//! apply` reaches them, through pidfd_getfd, wherever their network namespace is.
//!
//! The mode decides, as far as the kernel lets a socket tell: `force` sets every
//! configured option; `on` and `skip` leave an option the program has visibly set itself
//! (SO_KEEPALIVE already on, a user timeout, or a timing unlike its network namespace's
//! sysctl) and set the rest; `off` changes nothing. A program that set exactly the
//! sysctl's value cannot be told from one that set nothing. An option that already holds
//! the wanted value is not written, so a timing that follows the sysctl keeps following
//! it. MPTCP sockets have no user timeout to set from here.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use keepalive_cgroup::rules::Policy;
use keepalive_config::{Config, Mode, Opt, Wanted};
use rustix::io::Errno;
use rustix::net::sockopt;

use crate::procfs;
use crate::remote::{Options, Target, tcp_protocol};
use crate::sockets;

/// Exit status when some connection or process could not be changed; the programs stay
/// attached all the same.
const EXIT_PARTIAL: i32 = 1;

/// A network namespace's keepalive sysctls (net.ipv4.tcp_keepalive_time, _intvl,
/// _probes): what a socket that never had a timing set reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults {
    pub idle_s: u32,
    pub interval_s: u32,
    pub count: u32,
}

impl Defaults {
    /// Under `force`, where the program's own values do not matter, the sysctls are not
    /// read (reading another namespace's takes CAP_SYS_ADMIN).
    const UNREAD: Defaults = Defaults {
        idle_s: 0,
        interval_s: 0,
        count: 0,
    };
}

/// What `--existing` did.
#[derive(Debug, Default)]
pub struct Retrofit {
    /// TCP and MPTCP connections found (each socket once, however many processes share it).
    pub connections: usize,
    /// Connections on which at least one option was set.
    pub changed: usize,
    /// Options set, over all connections.
    pub options_set: usize,
    /// Processes holding at least one of the connections.
    pub processes: usize,
    /// Network namespaces the connections are in.
    pub namespaces: usize,
    /// Connections the attachment had configured already (made after the attach, or
    /// changed by an earlier `--existing`), left as they are.
    pub already: usize,
    /// Connections outside the attachment's filters, left as they are.
    pub outside: usize,
    /// Cgroups below with a keepalive attachment of their own, whose processes get
    /// that attachment's settings and are left to it.
    pub left_to_inner: Vec<std::path::PathBuf>,
    pub failures: Vec<Failure>,
}

/// Something that could not be done: where, why, and for how many other places the
/// same reason held (one line for a namespace whose sysctls cannot be read, say).
#[derive(Debug)]
pub struct Failure {
    pub place: String,
    pub reason: String,
    pub others: usize,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.reason)?;
        if self.others > 0 {
            write!(f, " (and {} more like it)", self.others)?;
        }
        Ok(())
    }
}

impl fmt::Display for Retrofit {
    /// `changed 3 of 4 connections (9 options) in 2 processes, 2 network namespaces`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "changed {} of {} ({}) in {}, {}",
            self.changed,
            counted(self.connections, "connection"),
            counted(self.options_set, "option"),
            counted(self.processes, "process"),
            counted(self.namespaces, "network namespace"),
        )?;
        if self.already > 0 {
            write!(
                f,
                "; {} configured by an attachment already",
                counted(self.already, "connection")
            )?;
        }
        if self.outside > 0 {
            write!(
                f,
                "; {} outside its filters",
                counted(self.outside, "connection")
            )?;
        }
        for inner in &self.left_to_inner {
            write!(f, "; left to its own attachment: {}", inner.display())?;
        }
        Ok(())
    }
}

pub fn counted(n: usize, what: &str) -> String {
    match (n, what.ends_with('s')) {
        (1, _) => format!("1 {what}"),
        (_, true) => format!("{n} {what}es"),
        (_, false) => format!("{n} {what}s"),
    }
}

/// Applies `policy` to the established connections of the processes in `cgroup` (an
/// absolute cgroup directory, as `keepalive_cgroup::attach` returns it) and below,
/// prints what it did, records it in the attachment's counters, and returns the exit
/// status: 0, or 1 when something could not be changed or recorded.
pub fn retrofit(cgroup: &Path, policy: &Policy) -> i32 {
    let done = cover(cgroup, policy);
    for failure in &done.failures {
        eprintln!("keepalive: --existing: {failure}");
    }
    println!("keepalive: --existing: {done}");
    if done.failures.is_empty() {
        0
    } else {
        EXIT_PARTIAL
    }
}

/// The work of [`retrofit`], without printing: applies the settings and records what
/// was done in the attachment's counters, for `status` (the agent calls this).
pub fn cover(cgroup: &Path, policy: &Policy) -> Retrofit {
    let mut done = apply(cgroup, policy);
    let recorded =
        keepalive_cgroup::record_existing(cgroup, done.changed as u64, done.options_set as u64);
    if let Err(error) = recorded {
        done.failures.push(Failure {
            place: "status".to_string(),
            reason: format!("cannot record it in the attachment's counters: {error}"),
            others: 0,
        });
    }
    done
}

/// The settings applied to every connection of the cgroup's processes that the
/// filters match, each with the settings of the rule it matches.
fn apply(cgroup: &Path, policy: &Policy) -> Retrofit {
    let mut walk = Walk {
        policy,
        seen: HashMap::new(),
        defaults: HashMap::new(),
        listening: HashMap::new(),
        namespaces: HashSet::new(),
        claims: None,
        done: Retrofit::default(),
    };
    match keepalive_cgroup::claims(cgroup) {
        Ok(claims) => walk.claims = Some(claims),
        Err(error) => walk.fail(format!("cgroup {}", cgroup.display()), error.to_string()),
    }
    let pids = processes(cgroup, &mut walk.done);
    for pid in pids {
        walk.process(pid);
    }
    walk.done.namespaces = walk.namespaces.len();
    walk.done
}

/// The processes of `cgroup` and of every cgroup below it, except those below a cgroup
/// with a keepalive attachment of its own (noted in `done`). A cgroup removed meanwhile
/// is not a failure.
fn processes(cgroup: &Path, done: &mut Retrofit) -> BTreeSet<i32> {
    let mut pids = BTreeSet::new();
    let mut pending = vec![cgroup.to_path_buf()];
    while let Some(dir) = pending.pop() {
        if dir != cgroup && keepalive_cgroup::attached_here(&dir) {
            done.left_to_inner.push(dir);
            continue;
        }
        let listed = members(&dir).and_then(|members| {
            pids.extend(members);
            std::fs::read_dir(&dir)
        });
        let entries = match listed {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                done.failures.push(Failure {
                    place: format!("cgroup {}", dir.display()),
                    reason: format!("cannot list its processes: {e}"),
                    others: 0,
                });
                continue;
            }
        };
        pending.extend(
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path()),
        );
    }
    pids
}

/// The processes with a thread in cgroup `dir`. A threaded cgroup refuses to list
/// cgroup.procs (EOPNOTSUPP): its threads, then, each mapped to its process.
fn members(dir: &Path) -> io::Result<Vec<i32>> {
    let numbers =
        |text: String| -> Vec<i32> { text.lines().filter_map(|l| l.trim().parse().ok()).collect() };
    match std::fs::read_to_string(dir.join("cgroup.procs")) {
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
            let threads = numbers(std::fs::read_to_string(dir.join("cgroup.threads"))?);
            Ok(threads.into_iter().filter_map(process_of_thread).collect())
        }
        listed => listed.map(numbers),
    }
}

/// The process (thread group) thread `tid` belongs to, from /proc/TID/status.
fn process_of_thread(tid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The state of one `--existing` pass.
struct Walk<'a> {
    policy: &'a Policy,
    /// Socket inodes already handled, and whether each is a connection: a socket shared
    /// by several processes (or descriptors) is one connection, handled once.
    seen: HashMap<u64, bool>,
    /// Each network namespace's sysctls, by the namespace's (device, inode).
    defaults: HashMap<(u64, u64), Result<Defaults, String>>,
    /// Each network namespace's listening ports, which tell accepted connections.
    listening: HashMap<(u64, u64), HashSet<std::net::SocketAddr>>,
    namespaces: HashSet<(u64, u64)>,
    /// The attachment's record of the sockets it configured; `None` when it could not
    /// be opened (said once): then every connection is changed, and none recorded.
    claims: Option<keepalive_cgroup::Claims>,
    done: Retrofit,
}

/// A process as the failures name it: `PID 42 (nginx)`, or `PID 42` once it is gone.
fn process_name(pid: i32) -> String {
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        // A command name may hold any byte but NUL: shown on one line.
        Ok(command) => format!("PID {pid} ({})", command.trim_end().escape_debug()),
        Err(_) => format!("PID {pid}"),
    }
}

/// Whether an error only says that the process went away meanwhile.
fn is_gone(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::NotFound
        || error.raw_os_error() == Some(Errno::SRCH.raw_os_error())
}

impl Walk<'_> {
    fn process(&mut self, pid: i32) {
        match self.sockets_of(pid) {
            Ok(true) => self.done.processes += 1,
            Ok(false) => {}
            Err(e) if is_gone(&e) => {}
            Err(e) => {
                let explained = sockets::explain(pid, &e);
                let reason = explained.trim_start_matches(&format!("process {pid}: "));
                self.fail(process_name(pid), reason.to_string());
            }
        }
    }

    fn fail(&mut self, place: String, reason: String) {
        self.done.failures.push(Failure {
            place,
            reason,
            others: 0,
        });
    }

    /// Notes a failure that may hold for many connections (a network namespace whose
    /// sysctls cannot be read): said once, with a count of the others.
    fn fail_once(&mut self, place: String, reason: String) {
        match self.done.failures.iter_mut().find(|f| f.reason == reason) {
            Some(same) => same.others += 1,
            None => self.done.failures.push(Failure {
                place,
                reason,
                others: 0,
            }),
        }
    }

    /// Handles each socket of `pid`; true when it holds a connection. The errors are
    /// those about the whole process, which could not be reached.
    fn sockets_of(&mut self, pid: i32) -> io::Result<bool> {
        let target = Target::open(pid)?;
        // A zombie has no descriptors left.
        if procfs::has_exited(pid) {
            return Ok(false);
        }
        let mut holds_one = false;
        for (fd, inode) in procfs::socket_fds(pid)? {
            let is_connection = match self.seen.get(&inode) {
                Some(&known) => known,
                None => match sockets::duplicate(&target, fd, inode)? {
                    Some(socket) => self.first_sight(pid, fd, inode, &socket),
                    None => continue, // closed since it was listed
                },
            };
            holds_one |= is_connection;
        }
        Ok(holds_one)
    }

    /// Handles a socket not seen before (descriptor `fd` of `pid`): configures it if it
    /// is a connection, and says whether it is.
    fn first_sight(&mut self, pid: i32, fd: i32, inode: u64, socket: &OwnedFd) -> bool {
        let found = is_connection(socket);
        let is_connection = found.as_ref().is_ok_and(|&yes| yes);
        self.seen.insert(inode, is_connection);
        let done = match found {
            Ok(true) => self.configure(pid, inode, socket),
            Ok(false) => Ok(()),
            Err(reason) => Err(reason),
        };
        if let Err(reason) = done {
            self.fail(format!("{} fd {fd}", process_name(pid)), reason);
        }
        is_connection
    }

    /// Applies the settings to one connection of `pid`; the error says what could not
    /// be read or set.
    fn configure(&mut self, pid: i32, inode: u64, socket: &OwnedFd) -> Result<(), String> {
        self.done.connections += 1;
        let namespace = self.namespace_of(socket)?;
        if self
            .claims
            .as_ref()
            .is_some_and(|claims| claims.configured(socket.as_fd()))
        {
            self.done.already += 1;
            return Ok(());
        }
        let Some(slot) = self.slot_of(pid, namespace.key, socket)? else {
            self.done.outside += 1;
            return Ok(());
        };
        let config = self.policy.config_of(slot);
        // Only `on` and `skip` tell the program's own values from the sysctls'.
        let defaults = match config.mode {
            Mode::Force | Mode::Off => Defaults::UNREAD,
            Mode::On | Mode::Skip => match self.defaults_in(namespace) {
                Ok(defaults) => defaults,
                Err(reason) => {
                    self.fail_once(format!("connection {inode}"), reason);
                    return Ok(());
                }
            },
        };
        let now = Options::read(socket).map_err(|e| format!("reading its options: {e}"))?;
        let writes = plan(&now, &defaults, config);
        let mut errors = Vec::new();
        let mut set = 0;
        for &(opt, value) in &writes {
            match write(socket, opt, value) {
                Ok(()) => set += 1,
                Err(e) => errors.push(format!("setting {opt}: {e}")),
            }
        }
        log::debug!("socket {inode}: {set} options set");
        self.done.options_set += set;
        self.done.changed += usize::from(set > 0);
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        // Written after the options, so that the programs do not take these calls for
        // the program's own.
        if let Some(claims) = self.claims.as_mut().filter(|_| config.mode != Mode::Off) {
            let (own, auto_ms) = claim_of(&now, &defaults, config, &writes);
            claims
                .adopt(socket.as_fd(), own, auto_ms, slot)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The rule a connection of `pid` matches (0: none), as the programs would have
    /// chosen at connect or accept, or `None` outside the filters.
    fn slot_of(
        &mut self,
        pid: i32,
        namespace: (u64, u64),
        socket: &OwnedFd,
    ) -> Result<Option<usize>, String> {
        if self.policy.is_simple() {
            return Ok(Some(0));
        }
        let address = |found: Option<rustix::net::SocketAddrAny>| {
            found
                .and_then(|a| std::net::SocketAddr::try_from(a).ok())
                .ok_or("its addresses cannot be read")
        };
        let local = address(rustix::net::getsockname(socket).ok())?;
        let remote = address(rustix::net::getpeername(socket).ok().flatten())?;
        // The listeners of the namespace the process is in now: a process that moved
        // to another since its socket was made (rare) is judged by its new one's.
        let listening = self
            .listening
            .entry(namespace)
            .or_insert_with(|| procfs::listening(pid).unwrap_or_default());
        let (peer, port, direction) = crate::policy::as_filters_see(local, remote, listening);
        Ok(self.policy.slot_for(peer, port, direction))
    }

    /// The network namespace `socket` is in, counted, and its identity.
    fn namespace_of(&mut self, socket: &OwnedFd) -> Result<Namespace, String> {
        let fd = namespace_of(socket)
            .map_err(|e| format!("finding its network namespace (SIOCGSKNS): {e}"))?;
        let stat = rustix::fs::fstat(&fd)
            .map_err(|e| format!("identifying its network namespace: {e}"))?;
        let key = (stat.st_dev, stat.st_ino);
        self.namespaces.insert(key);
        Ok(Namespace { fd, key })
    }

    /// The sysctls of `namespace`, read once per namespace.
    fn defaults_in(&mut self, namespace: Namespace) -> Result<Defaults, String> {
        self.defaults
            .entry(namespace.key)
            .or_insert_with(|| {
                read_defaults(namespace.fd.as_fd()).map_err(|e| {
                    format!(
                        "cannot read network namespace {}'s net.ipv4.tcp_keepalive_*: {e}",
                        namespace.key.1
                    )
                })
            })
            .clone()
    }
}

/// A network namespace: open, and its (device, inode).
struct Namespace {
    fd: OwnedFd,
    key: (u64, u64),
}

/// Whether `socket` is an established TCP or MPTCP connection: listeners, and sockets
/// not (or no longer) connected, have no peer.
fn is_connection(socket: &OwnedFd) -> Result<bool, String> {
    let what = tcp_protocol(socket).map_err(|e| format!("reading its type: {e}"))?;
    Ok(what.is_some() && rustix::net::getpeername(socket).is_ok())
}

/// The network namespace a socket belongs to (which need not be its process's).
fn namespace_of(socket: &OwnedFd) -> io::Result<OwnedFd> {
    // SAFETY: SIOCGSKNS takes no argument; it returns a new descriptor or -1.
    let fd = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGSKNS) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads the keepalive sysctls of `namespace`: /proc/sys/net shows the network
/// namespace of the thread that opens it. This process's own is read as it is; another
/// from a thread that enters it (setns, which needs CAP_SYS_ADMIN, and moves only the
/// calling thread, which ends right after).
fn read_defaults(namespace: BorrowedFd<'_>) -> io::Result<Defaults> {
    let own = rustix::fs::stat("/proc/thread-self/ns/net")?;
    let theirs = rustix::fs::fstat(namespace)?;
    if (own.st_dev, own.st_ino) == (theirs.st_dev, theirs.st_ino) {
        return read_sysctls();
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: setns takes a descriptor and a namespace type, and changes
                // only this thread's network namespace; this thread does nothing else.
                if unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    let error = io::Error::last_os_error();
                    return Err(match error.raw_os_error() {
                        Some(libc::EPERM) => io::Error::new(
                            error.kind(),
                            "entering it takes CAP_SYS_ADMIN, which `on` and `skip` need \
                             to tell a program's own timings from the namespace's \
                             (`--mode force` does not)",
                        ),
                        _ => error,
                    });
                }
                read_sysctls()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the thread reading them panicked")))
    })
}

/// The calling thread's network namespace's keepalive sysctls.
fn read_sysctls() -> io::Result<Defaults> {
    Ok(Defaults {
        idle_s: sysctl("tcp_keepalive_time")?,
        interval_s: sysctl("tcp_keepalive_intvl")?,
        count: sysctl("tcp_keepalive_probes")?,
    })
}

fn sysctl(name: &str) -> io::Result<u32> {
    let path = format!("/proc/sys/net/ipv4/{name}");
    let text = std::fs::read_to_string(&path)?;
    text.trim()
        .parse()
        .map_err(|_| io::Error::other(format!("{path}: {:?} is not a number", text.trim())))
}

/// The order options are written in: the timings before SO_KEEPALIVE, as `apply` does,
/// and the user timeout last, since `auto` is computed from the timings.
const WRITE_ORDER: [Opt; 5] = [
    Opt::Idle,
    Opt::Interval,
    Opt::Count,
    Opt::KeepAlive,
    Opt::UserTimeout,
];

/// The options to write, in order, on a connection that holds `now`, in a network
/// namespace whose sysctls are `defaults`, for `config`. Under `on` and `skip` an
/// option the program visibly set itself is left alone; an option that already holds
/// the value is not written.
pub fn plan(now: &Options, defaults: &Defaults, config: &Config) -> Vec<(Opt, u32)> {
    let mut after = *now;
    let mut writes = Vec::new();
    for opt in WRITE_ORDER {
        let (Some(current), Some(wanted)) = (value(&after, opt), config.wanted(opt)) else {
            continue;
        };
        if config.mode != Mode::Force && is_own(now, defaults, opt) {
            continue;
        }
        let value = match wanted {
            // Never negative: the parsers refuse it.
            Wanted::Value(v) => u32::try_from(v).unwrap_or(0),
            Wanted::AutoUserTimeout => {
                keepalive_config::auto_user_timeout_ms(after.idle_s, after.interval_s, after.count)
            }
        };
        if value != current {
            set(&mut after, opt, value);
            writes.push((opt, value));
        }
    }
    writes
}

/// What the attachment records of a connection `--existing` changed (see
/// `keepalive_cgroup::Claims::adopt`): the options the program had set itself, as a bit
/// per option, and the user timeout `auto` gave it (0 when `auto` did not set it).
fn claim_of(
    now: &Options,
    defaults: &Defaults,
    config: &Config,
    writes: &[(Opt, u32)],
) -> (u32, i32) {
    let own = Opt::ALL
        .into_iter()
        .filter(|&opt| config.mode != Mode::Force && is_own(now, defaults, opt))
        .fold(0, |bits, opt| bits | 1 << opt as u32);
    let auto = config.wanted(Opt::UserTimeout) == Some(Wanted::AutoUserTimeout)
        && own & (1 << Opt::UserTimeout as u32) == 0;
    let auto_ms = match writes.iter().find(|(opt, _)| *opt == Opt::UserTimeout) {
        Some(&(_, ms)) if auto => i32::try_from(ms).unwrap_or(i32::MAX),
        // Already at the value `auto` computes: nothing written, and still `auto`'s.
        None if auto => now
            .user_timeout_ms
            .map_or(0, |ms| i32::try_from(ms).unwrap_or(i32::MAX)),
        _ => 0,
    };
    (own, auto_ms)
}

/// Whether the program set `opt` itself, as far as a socket shows it: SO_KEEPALIVE on,
/// a user timeout, or a timing other than the namespace's sysctl.
fn is_own(now: &Options, defaults: &Defaults, opt: Opt) -> bool {
    match opt {
        Opt::KeepAlive => now.keepalive,
        Opt::Idle => now.idle_s != defaults.idle_s,
        Opt::Interval => now.interval_s != defaults.interval_s,
        Opt::Count => now.count != defaults.count,
        Opt::UserTimeout => now.user_timeout_ms.is_some_and(|ms| ms != 0),
    }
}

/// The value of `opt` in `options`; `None` for a user timeout MPTCP does not have.
fn value(options: &Options, opt: Opt) -> Option<u32> {
    match opt {
        Opt::KeepAlive => Some(options.keepalive.into()),
        Opt::Idle => Some(options.idle_s),
        Opt::Interval => Some(options.interval_s),
        Opt::Count => Some(options.count),
        Opt::UserTimeout => options.user_timeout_ms,
    }
}

fn set(options: &mut Options, opt: Opt, value: u32) {
    match opt {
        Opt::KeepAlive => options.keepalive = value != 0,
        Opt::Idle => options.idle_s = value,
        Opt::Interval => options.interval_s = value,
        Opt::Count => options.count = value,
        Opt::UserTimeout => options.user_timeout_ms = Some(value),
    }
}

fn write(socket: &OwnedFd, opt: Opt, value: u32) -> rustix::io::Result<()> {
    let seconds = Duration::from_secs(value.into());
    match opt {
        Opt::KeepAlive => sockopt::set_socket_keepalive(socket, value != 0),
        Opt::Idle => sockopt::set_tcp_keepidle(socket, seconds),
        Opt::Interval => sockopt::set_tcp_keepintvl(socket, seconds),
        Opt::Count => sockopt::set_tcp_keepcnt(socket, value),
        Opt::UserTimeout => sockopt::set_tcp_user_timeout(socket, value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keepalive_config::UserTimeout;

    /// A namespace whose sysctls are not the kernel's usual 7200/75/9.
    const DEFAULTS: Defaults = Defaults {
        idle_s: 5000,
        interval_s: 50,
        count: 5,
    };

    /// A connection nobody configured, in that namespace.
    const UNTOUCHED: Options = Options {
        keepalive: false,
        idle_s: 5000,
        interval_s: 50,
        count: 5,
        user_timeout_ms: Some(0),
    };

    /// A program that turned keepalive on with an idle time of its own, and a user timeout.
    const OWN: Options = Options {
        keepalive: true,
        idle_s: 100,
        user_timeout_ms: Some(4000),
        ..UNTOUCHED
    };

    fn config(mode: Mode, user_timeout: Option<UserTimeout>) -> Config {
        Config {
            mode,
            idle: Some(31),
            interval: Some(7),
            count: Some(4),
            user_timeout,
            ..Config::DEFAULT
        }
    }

    #[test]
    fn an_untouched_connection_gets_everything_configured_timings_first() {
        for mode in [Mode::On, Mode::Force] {
            assert_eq!(
                plan(&UNTOUCHED, &DEFAULTS, &config(mode, None)),
                [
                    (Opt::Idle, 31),
                    (Opt::Interval, 7),
                    (Opt::Count, 4),
                    (Opt::KeepAlive, 1)
                ],
                "{mode:?}"
            );
        }
    }

    #[test]
    fn on_keeps_what_the_program_visibly_set_and_force_replaces_it() {
        let auto = Some(UserTimeout::Auto);
        assert_eq!(
            plan(&OWN, &DEFAULTS, &config(Mode::On, auto)),
            [(Opt::Interval, 7), (Opt::Count, 4)]
        );
        // SO_KEEPALIVE is already on: nothing to write for it even under force.
        assert_eq!(
            plan(&OWN, &DEFAULTS, &config(Mode::Force, auto)),
            [
                (Opt::Idle, 31),
                (Opt::Interval, 7),
                (Opt::Count, 4),
                (Opt::UserTimeout, (31 + 7 * 4) * 1000)
            ]
        );
    }

    #[test]
    fn own_is_judged_against_the_sockets_namespace_not_the_usual_defaults() {
        // 7200/75/9 read in a namespace whose sysctls are 5000/50/5 were set by the program.
        let usual = Options {
            idle_s: 7200,
            interval_s: 75,
            count: 9,
            ..UNTOUCHED
        };
        assert_eq!(
            plan(&usual, &DEFAULTS, &config(Mode::On, None)),
            [(Opt::KeepAlive, 1)]
        );
    }

    #[test]
    fn skip_leaves_so_keepalive_and_off_leaves_everything() {
        assert_eq!(
            plan(&UNTOUCHED, &DEFAULTS, &config(Mode::Skip, None)),
            [(Opt::Idle, 31), (Opt::Interval, 7), (Opt::Count, 4)]
        );
        let auto = Some(UserTimeout::Auto);
        for now in [UNTOUCHED, OWN] {
            assert_eq!(plan(&now, &DEFAULTS, &config(Mode::Off, auto)), []);
        }
    }

    #[test]
    fn auto_follows_the_timings_the_connection_ends_up_with() {
        // Under on the program's idle of 100 stays, so auto counts with it.
        let own_idle = Options {
            user_timeout_ms: Some(0),
            ..OWN
        };
        let writes = plan(
            &own_idle,
            &DEFAULTS,
            &config(Mode::On, Some(UserTimeout::Auto)),
        );
        assert_eq!(
            writes.last(),
            Some(&(Opt::UserTimeout, (100 + 7 * 4) * 1000))
        );
    }

    #[test]
    fn only_what_differs_is_written_and_mptcp_gets_no_user_timeout() {
        let done = Options {
            keepalive: true,
            idle_s: 31,
            interval_s: 7,
            count: 4,
            user_timeout_ms: Some(9000),
        };
        let fixed = Some(UserTimeout::Millis(9000));
        assert_eq!(plan(&done, &DEFAULTS, &config(Mode::Force, fixed)), []);
        let mptcp = Options {
            user_timeout_ms: None,
            ..UNTOUCHED
        };
        let writes = plan(&mptcp, &DEFAULTS, &config(Mode::Force, fixed));
        assert!(writes.iter().all(|(opt, _)| *opt != Opt::UserTimeout));
        assert_eq!(writes.len(), 4);
    }

    #[test]
    fn the_summary_counts_with_plurals() {
        let done = Retrofit {
            connections: 4,
            changed: 3,
            options_set: 9,
            processes: 2,
            namespaces: 2,
            ..Retrofit::default()
        };
        assert_eq!(
            done.to_string(),
            "changed 3 of 4 connections (9 options) in 2 processes, 2 network namespaces"
        );
        let one = Retrofit {
            connections: 1,
            changed: 1,
            options_set: 1,
            processes: 1,
            namespaces: 1,
            already: 2,
            outside: 0,
            left_to_inner: vec!["/sys/fs/cgroup/pod/inner".into()],
            failures: Vec::new(),
        };
        assert_eq!(
            one.to_string(),
            "changed 1 of 1 connection (1 option) in 1 process, 1 network namespace; \
             2 connections configured by an attachment already; left to its own \
             attachment: /sys/fs/cgroup/pod/inner"
        );
    }
}
