//! The agent's HTTP server: `GET /metrics` and `GET /healthz`, each answered from what
//! the kernel reports at that moment, against the configuration in force.
//!
//! It faces whoever can reach its port (a DaemonSet's is every pod's), so it is bounded
//! everywhere, and nothing a client does or fails to do holds up another:
//! - one thread accepts connections and reads their request heads as bytes arrive
//!   (poll), at most [`PENDING`] at a time (the oldest is closed past that), each
//!   within [`IO_TIMEOUT`] of its accept and within [`HEAD_LIMIT`] bytes: a connection
//!   that sends nothing costs a descriptor for a second, never a thread;
//! - complete requests go to [`WORKERS`] threads, which answer each within
//!   [`IO_TIMEOUT`] (a client that reads nothing is cut off) and close: one request
//!   per connection;
//! - requests are parsed by httparse; a failure to accept (EMFILE) is waited out,
//!   never fatal; stopping does not wait for anything.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use keepalive_cgroup::Attachment;
use rustix::event::{PollFd, PollFlags, Timespec};

use super::config::Table;
use super::owner::Failures;
use super::standing::{self, path_of};
use crate::metrics;

/// Worker threads: answers written at once.
const WORKERS: usize = 4;
/// Complete requests waiting for a worker; past this the oldest are closed.
const WAITING: usize = 16;
/// Connections whose request is still being read; past this the oldest are closed.
const PENDING: usize = 256;
/// The largest request head (request line and headers) read.
const HEAD_LIMIT: usize = 8192;
/// For reading a request and for writing its answer: Prometheus and probes send their
/// request at once and read the answer at once.
const IO_TIMEOUT: Duration = Duration::from_secs(1);

/// What the server answers from, beside the kernel.
#[derive(Clone)]
pub struct Shared {
    /// The configured tables, replaced whole on a reload.
    pub tables: Arc<RwLock<Arc<Vec<Table>>>>,
    /// The agent's last failure per cgroup, for /healthz.
    pub failures: Failures,
    pub mount: PathBuf,
}

/// The running server; [`Server::stop`] ends it.
pub struct Server {
    address: SocketAddr,
    stopping: Arc<AtomicBool>,
}

impl Server {
    /// Listens on `address` and serves from threads of its own.
    pub fn start(address: SocketAddr, shared: Shared) -> Result<Server, String> {
        let listener =
            TcpListener::bind(address).map_err(|e| format!("cannot listen on {address}: {e}"))?;
        let address = listener
            .local_addr()
            .and_then(|address| listener.set_nonblocking(true).map(|()| address))
            .map_err(|e| format!("cannot set up the listening socket: {e}"))?;
        let waiting = Arc::new(Waiting::default());
        for n in 0..WORKERS {
            let (waiting, shared) = (Arc::clone(&waiting), shared.clone());
            spawn(&format!("http-{n}"), move || work(&waiting, &shared))?;
        }
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&stopping);
        spawn("http-read", move || {
            read_requests(&listener, &waiting, &stop)
        })?;
        Ok(Server { address, stopping })
    }

    /// Where it listens (with the port the kernel chose, for port 0).
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// Stops accepting. Requests being answered are not waited for: the agent goes on
    /// to stop, whatever a client does.
    pub fn stop(self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the reading thread, which then sees it is to stop.
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_millis(100));
    }
}

fn spawn(name: &str, run: impl FnOnce() + Send + 'static) -> Result<(), String> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(run)
        .map(drop)
        .map_err(|e| format!("cannot start the HTTP thread {name}: {e}"))
}

/// A request read whole, for a worker to answer: `None` for one that does not parse
/// or whose head is over [`HEAD_LIMIT`] (answered 400).
struct Request {
    stream: TcpStream,
    method_and_target: Option<(String, String)>,
}

/// Complete requests waiting for a worker, newest last.
#[derive(Default)]
struct Waiting {
    requests: Mutex<VecDeque<Request>>,
    added: Condvar,
}

impl Waiting {
    /// Adds `request`, closing the oldest waiting one when there are too many.
    fn push(&self, request: Request) {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        requests.push_back(request);
        if requests.len() > WAITING {
            requests.pop_front();
            log::debug!("HTTP: busy, the oldest waiting request closed");
        }
        self.added.notify_one();
    }

    /// The oldest waiting request, once there is one.
    fn take(&self) -> Request {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(request) = requests.pop_front() {
                return request;
            }
            requests = self.added.wait(requests).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// A connection whose request head is being read.
struct Pending {
    stream: TcpStream,
    head: Vec<u8>,
    deadline: Instant,
}

/// What reading a pending connection's bytes came to.
enum Progress {
    More,
    Done(Option<(String, String)>),
    Closed,
}

impl Pending {
    /// Reads what has arrived, parsing after each piece: a request is answered as soon
    /// as its head is whole, whatever follows it (a body, more requests, the client's
    /// FIN).
    fn read(&mut self) -> Progress {
        let mut chunk = [0u8; 2048];
        loop {
            // Never past one byte over the limit, so that the limit is exact.
            let room = (HEAD_LIMIT + 1 - self.head.len()).min(chunk.len());
            match self.stream.read(&mut chunk[..room]) {
                // Every piece before was parsed: the head is not whole.
                Ok(0) => return Progress::Closed,
                Ok(n) => self.head.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Progress::More,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return Progress::Closed,
            }
            if let Some(done) = self.parsed() {
                return done;
            }
            if self.head.len() > HEAD_LIMIT {
                return Progress::Done(None);
            }
        }
    }

    /// The request, once its head is whole (or `Done(None)` once it cannot parse);
    /// `None` while more is needed.
    fn parsed(&self) -> Option<Progress> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&self.head) {
            Ok(httparse::Status::Complete(_)) => Some(Progress::Done(Some((
                request.method.unwrap_or_default().to_string(),
                request.path.unwrap_or_default().to_string(),
            )))),
            Ok(httparse::Status::Partial) => None,
            Err(_) => Some(Progress::Done(None)),
        }
    }
}

/// Accepts connections and reads their request heads as bytes arrive, handing each
/// complete one to the workers; closes those that take too long or are too many.
fn read_requests(listener: &TcpListener, waiting: &Waiting, stopping: &AtomicBool) {
    let mut pending: VecDeque<Pending> = VecDeque::new();
    while !stopping.load(Ordering::SeqCst) {
        let (listener_ready, ready) = wait_for_bytes(listener, &pending);
        let now = Instant::now();
        let mut kept = VecDeque::with_capacity(pending.len());
        for (mut connection, has_bytes) in pending.drain(..).zip(ready) {
            let progress = if has_bytes {
                connection.read()
            } else {
                Progress::More
            };
            match progress {
                Progress::More if connection.deadline > now => kept.push_back(connection),
                Progress::More | Progress::Closed => {} // too slow, or gone: closed
                Progress::Done(method_and_target) => waiting.push(Request {
                    stream: connection.stream,
                    method_and_target,
                }),
            }
        }
        pending = kept;
        if listener_ready {
            accept_all(listener, &mut pending, waiting);
        }
    }
}

/// Waits until the listener or a pending connection has something to read, or the
/// next deadline: whether the listener is ready, and which of `pending` are.
fn wait_for_bytes(listener: &TcpListener, pending: &VecDeque<Pending>) -> (bool, Vec<bool>) {
    let mut fds: Vec<PollFd<'_>> = std::iter::once(PollFd::new(listener, PollFlags::IN))
        .chain(
            pending
                .iter()
                .map(|p| PollFd::new(&p.stream, PollFlags::IN)),
        )
        .collect();
    let next = pending
        .iter()
        .map(|p| p.deadline)
        .min()
        .map_or(IO_TIMEOUT, |deadline| {
            deadline.saturating_duration_since(Instant::now())
        })
        .min(IO_TIMEOUT);
    let timeout = Timespec {
        tv_sec: next.as_secs() as _,
        tv_nsec: next.subsec_nanos() as _,
    };
    if rustix::event::poll(&mut fds, Some(&timeout)).is_err() {
        return (false, vec![false; pending.len()]);
    }
    let ready = |fd: &PollFd<'_>| !fd.revents().is_empty();
    (ready(&fds[0]), fds[1..].iter().map(ready).collect())
}

/// Accepts every connection waiting on the listener.
fn accept_all(listener: &TcpListener, pending: &mut VecDeque<Pending>, waiting: &Waiting) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if stream.set_nonblocking(true).is_err() {
                    continue;
                }
                pending.push_back(Pending {
                    stream,
                    head: Vec::new(),
                    deadline: Instant::now() + IO_TIMEOUT,
                });
                if pending.len() > max_pending() {
                    let oldest = pending.pop_front();
                    oldest.into_iter().for_each(|c| last_chance(c, waiting));
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // Out of descriptors: the oldest silent connections give theirs back, so
            // that a probe behind them gets one. Out of anything else: wait a moment
            // rather than spin.
            Err(error) => {
                log::debug!("HTTP: cannot accept: {error}");
                if error.raw_os_error() == Some(libc::EMFILE) && !pending.is_empty() {
                    let freed = pending.len().div_ceil(4);
                    for connection in pending.drain(..freed) {
                        last_chance(connection, waiting);
                    }
                } else {
                    std::thread::sleep(Duration::from_millis(100));
                }
                return;
            }
        }
    }
}

/// A pending connection that must go to make room: read once more, and answered if
/// its request is whole by now (a probe whose bytes arrived since the last poll),
/// else closed.
fn last_chance(mut connection: Pending, waiting: &Waiting) {
    if let Progress::Done(method_and_target) = connection.read() {
        waiting.push(Request {
            stream: connection.stream,
            method_and_target,
        });
    }
}

/// How many connections may be pending: [`PENDING`], or fewer under a low limit on
/// open files, so that silent connections leave descriptors to the rest of the agent
/// (reading its attachments opens a few).
fn max_pending() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    limit.map_or(PENDING, |n| {
        PENDING.min(usize::try_from(n / 2).unwrap_or(PENDING))
    })
}

/// A worker: answers the requests read whole.
fn work(waiting: &Waiting, shared: &Shared) {
    loop {
        let Request {
            mut stream,
            method_and_target,
        } = waiting.take();
        let sent = stream
            .set_nonblocking(false)
            .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
            .and_then(|()| match method_and_target {
                Some((method, target)) => {
                    let reply = answer(&method, &target, shared);
                    respond(&mut stream, reply, method == "HEAD")
                }
                None => respond(
                    &mut stream,
                    (400, TEXT, "a request this server cannot read\n".into()),
                    false,
                ),
            });
        if let Err(error) = sent {
            log::debug!("HTTP: {error}");
        }
    }
}

/// Writes `reply` (its head only, for HEAD) and closes: one request per connection.
fn respond(stream: &mut TcpStream, reply: Answer, head: bool) -> std::io::Result<()> {
    let (status, content_type, body) = reply;
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head {
        response.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&response)?;
    stream.flush()?;
    // Closing the sending side first lets the client read the whole answer even if
    // it sent more than was read (a body, pipelined requests): closing with unread
    // bytes would send a reset.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

fn answer(method: &str, target: &str, shared: &Shared) -> Answer {
    // The absolute form (`GET http://host/metrics`), which servers must accept too.
    let origin = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |slash| &rest[slash..]),
        None => target,
    };
    let path = origin.split('?').next().unwrap_or_default();
    let readable = matches!(method, "GET" | "HEAD");
    match (path, readable) {
        ("/metrics", true) => with_survey(shared, |survey, found| {
            let entries = standing::entries(survey, found);
            (200, metrics::CONTENT_TYPE, metrics::render(&entries))
        }),
        ("/healthz", true) => with_survey(shared, |survey, _| {
            let failures = shared.failures.lock().unwrap_or_else(|e| e.into_inner());
            let (healthy, text) = standing::health(survey, &failures);
            (if healthy { 200 } else { 503 }, TEXT, text)
        }),
        ("/metrics" | "/healthz", false) => (405, TEXT, "only GET and HEAD\n".into()),
        _ => (
            404,
            TEXT,
            "not found: this serves /metrics and /healthz\n".into(),
        ),
    }
}

const TEXT: &str = "text/plain; charset=utf-8";

/// Status, content type and body.
type Answer = (u16, &'static str, String);
type Survey<'a> = [(&'a Table, standing::Standing)];

/// Runs `respond` on the configured tables with how each stands now, or answers 503
/// when the kernel's attachments cannot be read.
fn with_survey(shared: &Shared, respond: impl FnOnce(&Survey, &[Attachment]) -> Answer) -> Answer {
    let tables = Arc::clone(&shared.tables.read().unwrap_or_else(|e| e.into_inner()));
    match keepalive_cgroup::status(None) {
        Ok(found) => {
            let survey = standing::survey(&tables, &found, |c| path_of(&shared.mount, c).is_dir());
            respond(&survey, &found)
        }
        Err(error) => (
            503,
            TEXT,
            format!("cannot read keepalive's attachments: {error}\n"),
        ),
    }
}
