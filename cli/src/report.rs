//! `inspect` and `apply`: look at or change processes, then print a table for people
//! or JSON for scripts.

use std::io::{self, Write};

use serde::Serialize;

use keepalive_cgroup::rules::Filter;

use crate::args::{ApplyArgs, InspectArgs};
use crate::remote::{Options, Writes};
use crate::sockets::{self, LeftOut, Process, Socket};

/// Exit status when some process or socket could not be handled.
const EXIT_PARTIAL: i32 = 1;

/// One process in the JSON output: its report, or why there is none.
#[derive(Serialize)]
#[serde(untagged)]
enum Entry<T> {
    Done(T),
    Failed { pid: i32, error: String },
}

fn failed<T>(pid: i32, error: &std::io::Error) -> Entry<T> {
    let message = sockets::explain(pid, error);
    eprintln!("keepalive: {message}");
    Entry::Failed {
        pid,
        error: message,
    }
}

/// Writes the report to standard output, as JSON or as one table per process done,
/// and returns the exit status: `status`, or 1 when the report could not be written.
/// A reader that stops early (`| head`) is not a failure of the command: the work is
/// done, and the rest of the report goes unwritten without a word.
fn report<T: Serialize>(
    entries: &[Entry<T>],
    json: bool,
    table: fn(&mut dyn Write, &T) -> io::Result<()>,
    status: i32,
) -> i32 {
    let mut out = io::stdout().lock();
    let written = if json {
        write_json(&mut out, entries)
    } else {
        write_tables(&mut out, entries, table)
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => status,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => status,
        Err(e) => {
            eprintln!("keepalive: writing the report: {e}");
            EXIT_PARTIAL
        }
    }
}

fn write_json<T: Serialize>(out: &mut dyn Write, entries: &[Entry<T>]) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, entries)?;
    writeln!(out)
}

fn write_tables<T>(
    out: &mut dyn Write,
    entries: &[Entry<T>],
    table: fn(&mut dyn Write, &T) -> io::Result<()>,
) -> io::Result<()> {
    entries.iter().try_for_each(|entry| match entry {
        Entry::Done(done) => table(out, done),
        Entry::Failed { .. } => Ok(()),
    })
}

pub fn inspect(args: &InspectArgs) -> i32 {
    let entries: Vec<Entry<Process>> = args
        .pids
        .iter()
        .map(|&pid| match sockets::of_process(pid) {
            Ok(process) => Entry::Done(process),
            Err(error) => failed(pid, &error),
        })
        .collect();
    let any_failed = entries.iter().any(|e| match e {
        Entry::Done(process) => !process.left_out.is_empty(),
        Entry::Failed { .. } => true,
    });
    let status = if any_failed { EXIT_PARTIAL } else { 0 };
    report(&entries, args.json, write_inspect, status)
}

fn write_inspect(out: &mut dyn Write, process: &Process) -> io::Result<()> {
    writeln!(out, "{}", heading(process))?;
    if process.sockets.is_empty() {
        return Ok(());
    }
    let mut rows = vec![columns("NEXT-PROBE")];
    for socket in &process.sockets {
        let o = &socket.options;
        let next = socket
            .next_probe_s
            .map_or("-".into(), |s| format!("{s:.2}s"));
        let mut row = identity(socket);
        row.extend([
            on_off(o.keepalive),
            format!("{}s", o.idle_s),
            format!("{}s", o.interval_s),
        ]);
        row.extend([o.count.to_string(), user_timeout(o.user_timeout_ms), next]);
        rows.push(row);
    }
    write_table(out, &rows)?;
    writeln!(out)
}

/// One socket's change in `apply`.
#[derive(Serialize)]
struct Change<'a> {
    fd: i32,
    protocol: crate::remote::Protocol,
    family: &'static str,
    state: &'static str,
    local: Option<std::net::SocketAddr>,
    remote: Option<std::net::SocketAddr>,
    /// The socket options written (or, in a dry run, that would be).
    set: Vec<&'static str>,
    /// Options asked for that this socket cannot take, and why.
    not_set: Vec<NotSet>,
    before: Options,
    after: Options,
    error: Option<String>,
    #[serde(skip)]
    socket: &'a Socket,
}

/// An option `apply` was asked for but did not write.
#[derive(Serialize)]
struct NotSet {
    option: &'static str,
    why: &'static str,
}

impl<'a> Change<'a> {
    fn new(
        socket: &'a Socket,
        writes: &Writes,
        after: Options,
        error: Option<String>,
    ) -> Change<'a> {
        Change {
            fd: socket.fd,
            protocol: socket.protocol,
            family: socket.family,
            state: socket.state,
            local: socket.local,
            remote: socket.remote,
            set: writes.names(),
            not_set: Vec::new(),
            before: socket.options,
            after,
            error,
            socket,
        }
    }

    /// Notes what was asked for and cannot be set on this socket: MPTCP has no
    /// TCP_USER_TIMEOUT (the kernel refuses it), so none is written there.
    fn noting_refusals(mut self, args: &ApplyArgs) -> Change<'a> {
        if args.timings.user_timeout.is_some() && self.before.user_timeout_ms.is_none() {
            self.not_set.push(NotSet {
                option: "TCP_USER_TIMEOUT",
                why: "MPTCP sockets have no user timeout",
            });
        }
        self
    }

    /// The RESULT column: the error, or ok and what was not set.
    fn result(&self) -> String {
        if let Some(error) = &self.error {
            return error.clone();
        }
        let mut result = String::from("ok");
        for not_set in &self.not_set {
            result += &format!("; {} not set: {}", not_set.option, not_set.why);
        }
        result
    }
}

#[derive(Serialize)]
struct Applied<'a> {
    pid: i32,
    command: &'a str,
    dry_run: bool,
    sockets: Vec<Change<'a>>,
    /// TCP sockets the filters did not take (listeners and unconnected sockets, with a
    /// filter), left as they are.
    outside_filters: usize,
    left_out: &'a [LeftOut],
    #[serde(skip)]
    process: &'a Process,
}

pub fn apply(args: &ApplyArgs) -> i32 {
    let filter = args.filters.filter();
    let processes: Vec<(i32, std::io::Result<(Process, usize)>)> = args
        .pids
        .iter()
        .map(|&pid| (pid, sockets::of_process(pid).map(|p| matching(p, &filter))))
        .collect();
    let entries: Vec<Entry<Applied>> = processes
        .iter()
        .map(|(pid, found)| match found {
            Ok((process, outside_filters)) => Entry::Done(Applied {
                pid: *pid,
                command: &process.command,
                dry_run: args.dry_run,
                sockets: process
                    .sockets
                    .iter()
                    .map(|s| change(process, s, args).noting_refusals(args))
                    .collect(),
                outside_filters: *outside_filters,
                left_out: &process.left_out,
                process,
            }),
            Err(error) => failed(*pid, error),
        })
        .collect();
    let any_failed = entries.iter().any(|e| match e {
        Entry::Done(applied) => {
            !applied.left_out.is_empty() || applied.sockets.iter().any(|c| c.error.is_some())
        }
        Entry::Failed { .. } => true,
    });
    let status = if any_failed { EXIT_PARTIAL } else { 0 };
    report(&entries, args.json, write_applied, status)
}

/// `process` with only the sockets `filter` takes, as cgroup mode would take them at
/// connect or accept, and how many it left out: with a filter, listeners and
/// unconnected sockets too.
fn matching(mut process: Process, filter: &Filter) -> (Process, usize) {
    if filter.is_any() {
        return (process, 0);
    }
    let before = process.sockets.len();
    let listening = crate::procfs::listening(process.pid).unwrap_or_default();
    process.sockets.retain(|socket| {
        let (Some(local), Some(remote)) = (socket.local, socket.remote) else {
            return false;
        };
        let (peer, port, direction) = crate::policy::as_filters_see(local, remote, &listening);
        filter.matches(peer, port, direction)
    });
    let outside = before - process.sockets.len();
    (process, outside)
}

/// Sets the options asked for on one socket (unless this is a dry run) and reads
/// back what the kernel then holds, through a duplicate closed before the next one.
fn change<'a>(process: &Process, socket: &'a Socket, args: &ApplyArgs) -> Change<'a> {
    let writes = Writes::plan(&socket.options, &args.timings);
    let expected = writes.outcome(&socket.options);
    if args.dry_run {
        return Change::new(socket, &writes, expected, None);
    }
    let handle = match process.reach(socket) {
        Ok(Some(handle)) => handle,
        Ok(None) => {
            let error = "closed by the process since it was listed".to_string();
            return Change::new(socket, &Writes::default(), socket.options, Some(error));
        }
        Err(e) => {
            return Change::new(
                socket,
                &Writes::default(),
                socket.options,
                Some(e.to_string()),
            );
        }
    };
    log::info!("fd {}: setting {writes:?}", socket.fd);
    let written = writes.write(&handle);
    match Options::read(&handle) {
        Ok(after) => Change::new(socket, &writes, after, written.err().map(|e| e.to_string())),
        Err(e) => Change::new(
            socket,
            &writes,
            expected,
            Some(format!("reading back: {e}")),
        ),
    }
}

fn write_applied(out: &mut dyn Write, applied: &Applied) -> io::Result<()> {
    let what = if applied.dry_run {
        " (dry run: nothing changed)"
    } else {
        ""
    };
    let outside = match applied.outside_filters {
        0 => String::new(),
        n => format!(
            "; {} outside the filters, left as they are",
            crate::existing::counted(n, "other socket")
        ),
    };
    writeln!(out, "{}{outside}{what}", heading(applied.process))?;
    if applied.sockets.is_empty() {
        return Ok(());
    }
    let mut rows = vec![columns("RESULT")];
    for change in &applied.sockets {
        let (b, a) = (&change.before, &change.after);
        let mut row = identity(change.socket);
        row.push(transition(on_off(b.keepalive), on_off(a.keepalive)));
        row.push(transition(
            format!("{}s", b.idle_s),
            format!("{}s", a.idle_s),
        ));
        row.push(transition(
            format!("{}s", b.interval_s),
            format!("{}s", a.interval_s),
        ));
        row.push(transition(b.count.to_string(), a.count.to_string()));
        row.push(transition(
            user_timeout(b.user_timeout_ms),
            user_timeout(a.user_timeout_ms),
        ));
        row.push(change.result());
        rows.push(row);
    }
    write_table(out, &rows)?;
    writeln!(out)
}

fn heading(process: &Process) -> String {
    let n = process.sockets.len();
    let plural = if n == 1 { "" } else { "s" };
    let left_out = match process.left_out.len() {
        0 => String::new(),
        n => format!(", {n} left out (see the warnings)"),
    };
    format!(
        "PID {} ({}): {n} TCP socket{plural}{left_out}",
        process.pid, process.command
    )
}

/// The header row both tables share, with the last column's name.
fn columns(last: &str) -> Vec<String> {
    let shared = [
        "FD",
        "PROTO",
        "STATE",
        "LOCAL",
        "REMOTE",
        "KEEPALIVE",
        "IDLE",
    ];
    let more = ["INTVL", "CNT", "USER-TIMEOUT", last];
    shared.iter().chain(&more).map(|s| s.to_string()).collect()
}

fn identity(socket: &Socket) -> Vec<String> {
    let address = |a: Option<std::net::SocketAddr>| a.map_or("-".into(), |a| a.to_string());
    vec![
        socket.fd.to_string(),
        socket.protocol.name().to_string(),
        socket.state.to_string(),
        address(socket.local),
        address(socket.remote),
    ]
}

fn on_off(on: bool) -> String {
    if on { "on" } else { "off" }.into()
}

fn user_timeout(ms: Option<u32>) -> String {
    match ms {
        None => "n/a".into(),
        Some(0) => "off".into(),
        Some(ms) => format!("{ms}ms"),
    }
}

fn transition(before: String, after: String) -> String {
    if before == after {
        after
    } else {
        format!("{before} -> {after}")
    }
}

/// Left-aligned columns, two spaces apart, the first row being the header.
fn write_table(out: &mut dyn Write, rows: &[Vec<String>]) -> io::Result<()> {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        writeln!(out, "{}", cells.join("  ").trim_end())?;
    }
    Ok(())
}
