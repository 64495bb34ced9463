//! The agent's HTTP server: `GET /metrics` and `GET /healthz`, each answered from what
//! the kernel reports at that moment, against the configuration in force.
//!
//! It faces whoever can reach its port (a DaemonSet's is every pod's), so it is bounded
//! everywhere: a few worker threads; a short stack of accepted connections, newest
//! first, from which the oldest are dropped when it is full, so that a probe that comes
//! after a flood of idle connections is answered next rather than after them; one
//! request per connection; a request head of at most [`HEAD_LIMIT`] bytes; and
//! [`IO_TIMEOUT`] for reading it and for writing the answer, so that a client that
//! sends nothing or reads nothing holds a worker for no longer. Requests are parsed by
//! httparse; a failure to accept (EMFILE) is waited out, never fatal.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

use keepalive_cgroup::Attachment;

use super::config::Table;
use super::owner::Failures;
use super::standing::{self, path_of};
use crate::metrics;

/// Worker threads: requests answered at once.
const WORKERS: usize = 4;
/// Accepted connections waiting for a worker; past this the oldest are closed.
const WAITING: usize = 16;
/// The largest request head (request line and headers) read.
const HEAD_LIMIT: usize = 8192;
/// For reading a request and writing its answer: Prometheus and probes send their
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
            .map_err(|e| format!("cannot read the address it listens on: {e}"))?;
        let waiting = Arc::new(Waiting::default());
        for n in 0..WORKERS {
            let (waiting, shared) = (Arc::clone(&waiting), shared.clone());
            spawn(&format!("http-{n}"), move || work(&waiting, &shared))?;
        }
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&stopping);
        spawn("http-accept", move || accept(&listener, &waiting, &stop))?;
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
        // Wakes the accepting thread, which then sees it is to stop.
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

/// Accepted connections waiting for a worker, newest last.
#[derive(Default)]
struct Waiting {
    connections: Mutex<VecDeque<TcpStream>>,
    added: Condvar,
}

impl Waiting {
    /// Adds `stream`, closing the oldest waiting connection when there are too many.
    fn push(&self, stream: TcpStream) {
        let mut connections = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        connections.push_back(stream);
        if connections.len() > WAITING {
            connections.pop_front();
            log::debug!("HTTP: busy, the oldest waiting connection closed");
        }
        self.added.notify_one();
    }

    /// The newest waiting connection, once there is one.
    fn take(&self) -> TcpStream {
        let mut connections = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(stream) = connections.pop_back() {
                return stream;
            }
            connections = self
                .added
                .wait(connections)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Accepts connections and hands them to the workers.
fn accept(listener: &TcpListener, waiting: &Waiting, stopping: &AtomicBool) {
    for connection in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        match connection {
            Ok(stream) => waiting.push(stream),
            // Out of descriptors or memory, say: wait a moment rather than spin.
            Err(error) => {
                log::debug!("HTTP: cannot accept: {error}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// A worker: answers one request on each connection it takes.
fn work(waiting: &Waiting, shared: &Shared) {
    loop {
        let mut stream = waiting.take();
        if let Err(error) = serve(&mut stream, shared) {
            log::debug!("HTTP: {error}");
        }
    }
}

/// Reads one request from `stream` and answers it.
fn serve(stream: &mut TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    match read_request(stream)? {
        Some((method, target)) => {
            let reply = answer(&method, &target, shared);
            respond(stream, reply, method == "HEAD")
        }
        None => respond(
            stream,
            (400, TEXT, "a request this server cannot read\n".into()),
            false,
        ),
    }
}

/// The method and path of the request on `stream`; `None` for one that does not
/// parse, whose head is over [`HEAD_LIMIT`], or that takes over [`IO_TIMEOUT`] in all
/// (a byte at a time would otherwise renew the timeout of each read).
fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<(String, String)>> {
    let deadline = std::time::Instant::now() + IO_TIMEOUT;
    let mut buffer = vec![0u8; HEAD_LIMIT];
    let mut filled = 0;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut buffer[filled..])?;
        if n == 0 {
            return Ok(None);
        }
        filled += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buffer[..filled]) {
            Ok(httparse::Status::Complete(_)) => {
                let method = request.method.unwrap_or_default().to_string();
                let path = request.path.unwrap_or_default().to_string();
                return Ok(Some((method, path)));
            }
            Ok(httparse::Status::Partial) if filled < buffer.len() => continue,
            _ => return Ok(None),
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
    stream.flush()
}

fn answer(method: &str, target: &str, shared: &Shared) -> Answer {
    let path = target.split('?').next().unwrap_or_default();
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
