//! The agent's HTTP server (tiny_http, on a thread of its own): `GET /metrics` and
//! `GET /healthz`, each answered from what the kernel reports at that moment, against
//! the configuration in force.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use keepalive_cgroup::Attachment;
use tiny_http::{Header, Method, Request, Response};

use super::config::Table;
use super::owner::Failures;
use super::standing::{self, path_of};
use crate::metrics;

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
    http: Arc<tiny_http::Server>,
    thread: JoinHandle<()>,
}

impl Server {
    /// Listens on `address` and serves from a thread of its own.
    pub fn start(address: SocketAddr, shared: Shared) -> Result<Server, String> {
        let http = tiny_http::Server::http(address)
            .map_err(|e| format!("cannot listen on {address}: {e}"))?;
        let http = Arc::new(http);
        let serving = Arc::clone(&http);
        let thread = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                for request in serving.incoming_requests() {
                    answer(request, &shared);
                }
            })
            .map_err(|e| format!("cannot start the HTTP thread: {e}"))?;
        Ok(Server { http, thread })
    }

    /// Where it listens (with the port the kernel chose, for port 0).
    pub fn address(&self) -> String {
        match self.http.server_addr() {
            tiny_http::ListenAddr::IP(address) => address.to_string(),
            tiny_http::ListenAddr::Unix(path) => format!("{path:?}"),
        }
    }

    /// Stops serving and waits for the request being answered, if any.
    pub fn stop(self) {
        self.http.unblock();
        let _ = self.thread.join();
    }
}

fn answer(request: Request, shared: &Shared) {
    let path = request
        .url()
        .split('?')
        .next()
        .unwrap_or_default()
        .to_string();
    let readable = matches!(request.method(), Method::Get | Method::Head);
    let (status, content_type, body) = match (path.as_str(), readable) {
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
    };
    let header = Header::from_bytes("Content-Type", content_type).expect("a valid header");
    let response = Response::from_string(body)
        .with_status_code(status)
        .with_header(header);
    if let Err(error) = request.respond(response) {
        log::debug!("cannot answer a request for {path}: {error}");
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
