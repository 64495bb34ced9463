//! The agent's /metrics as Prometheus sees it: the real Prometheus server (Debian's
//! `prometheus` package), started here on loopback with a storage directory of its
//! own, scrapes the agent every second, and the test reads the counters back through
//! Prometheus's HTTP query API; `promtool check metrics` lints what the agent serves.
//! The cgroup's name has a quote, a backslash and a space, which the exposition must
//! escape and Prometheus must read back whole.

#[path = "support/agent.rs"]
mod agent;
#[path = "support/cgroup.rs"]
mod cgroup;
#[path = "support/cli.rs"]
mod cli;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent::{Agent, http_get, installed, promtool_complaints, relative};
use cgroup::{CONFIGURED, TestCgroup, client_in, own_cgroup, strings};
use support::TempDir;

/// A Prometheus server of the test's own, killed when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (ADDRESS:PORT) every second, keeping its
    /// data and log in `dir`.
    fn start(dir: &Path, target: &str) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: keepalive\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let port = free_port();
        let log = dir.join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create the log"))
            .spawn()
            .expect("prometheus starts");
        Prometheus { child, port, log }
    }

    /// The value of the instant query `query` (one series), if it has one yet.
    fn value(&self, query: &str) -> Option<String> {
        let encoded: String = query
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let url = format!(
            "http://127.0.0.1:{}/api/v1/query?query={encoded}",
            self.port
        );
        let (code, body) = http_get_quietly(&url)?;
        if code != 200 {
            return None;
        }
        let answer: serde_json::Value = serde_json::from_str(&body).ok()?;
        let result = answer["data"]["result"].as_array()?;
        assert!(result.len() <= 1, "{query}: more than one series: {body}");
        Some(result.first()?["value"][1].as_str()?.to_string())
    }

    /// Waits (at most 60 s) for `query` to be `expected`.
    fn wait_for(&self, query: &str, expected: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = None;
        while Instant::now() < deadline {
            last = self.value(query);
            if last.as_deref() == Some(expected) {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!(
            "{query}: {last:?}, not {expected}, after 60 s; Prometheus said:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// [`http_get`], or `None` while nothing listens yet.
fn http_get_quietly(url: &str) -> Option<(u16, String)> {
    let listening = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "--max-time", "5", url])
        .status()
        .is_ok_and(|s| s.success());
    listening.then(|| http_get(url))
}

/// A loopback port free now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("an address").port()
}

/// A PromQL string: quotes and backslashes escaped.
fn promql_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

#[test]
fn prometheus_scrapes_the_agent_and_reads_the_counters_back() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    if !support::require(
        installed("prometheus") && installed("promtool"),
        "Prometheus is not installed (Debian package prometheus)",
    ) {
        return;
    }
    let tmp = TempDir::new("agent-prometheus");
    let odd = own_cgroup().join(format!("ka-test-odd \"q\" \\b-{}", std::process::id()));
    let _ = std::fs::remove_dir(&odd);
    std::fs::create_dir(&odd).expect("make the cgroup");
    // TestCgroup removes it (detaching first) however the test ends.
    let cgroup = TestCgroup(odd.clone());
    let name = relative(&odd);
    let file = tmp.0.join("agent.toml");
    let toml_name = name.replace('\\', "\\\\").replace('"', "\\\"");
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:0\"\nreconcile = \"9h\"\n\n[[attach]]\ncgroup = \"{toml_name}\"\n\
             idle = 7\ninterval = 3\ncount = 4\nuser_timeout = \"9s\"\n"
        ),
    )
    .expect("write the configuration");
    let mut agent = Agent::start(&file, &[]);
    agent.wait_for_words(0, &["attached", &name]);
    for _ in 0..3 {
        assert_eq!(client_in(&cgroup, &[]), strings(CONFIGURED));
    }

    let (code, exposition) = agent.get("/metrics");
    assert_eq!(code, 200);
    assert_eq!(promtool_complaints(&exposition), "", "{exposition}");

    let prometheus = Prometheus::start(&tmp.0, &agent.address);
    let label = format!("{{cgroup={}}}", promql_string(&name));
    prometheus.wait_for("up{job=\"keepalive\"}", "1");
    prometheus.wait_for(&format!("keepalive_connections_total{label}"), "3");
    prometheus.wait_for(&format!("keepalive_attached{label}"), "1");
    // One series per cause, whatever their values (the kernel's side of them is not
    // this test's).
    prometheus.wait_for(&format!("count(keepalive_timeouts_total{label})"), "3");
    // The counter moves, and Prometheus sees it move.
    for _ in 0..2 {
        client_in(&cgroup, &[]);
    }
    prometheus.wait_for(&format!("keepalive_connections_total{label}"), "5");

    agent.signal(libc::SIGTERM);
    assert_eq!(agent.wait().code(), Some(0));
    drop(prometheus);
    drop(cgroup);
}
