//! Shared by the agent's tests: `keepalive agent` started on a configuration file,
//! its log lines read as they come, killed when dropped; HTTP requests with curl; and
//! readings of what the kernel holds for a cgroup (keepalive's programs attached to
//! it, whether they are still loaded, its pin directory).
#![allow(dead_code)] // each test binary uses its own part of this module

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::cgroup::mount;
use crate::cli::{keepalive_command, text};

/// A running `keepalive agent`, killed and reaped when dropped.
pub struct Agent {
    child: Child,
    log: Arc<(Mutex<Vec<String>>, Condvar)>,
    /// Where it serves, from its start line.
    pub address: String,
}

impl Agent {
    /// Starts `keepalive agent --config CONFIG EXTRA...` and waits for its start line.
    pub fn start(config: &Path, extra: &[&str]) -> Agent {
        let mut command = keepalive_command(&["agent", "--config"]);
        command.arg(config).args(extra);
        Agent::spawn(command)
    }

    /// The same, run by `launcher` (a command that ends by exec'ing the rest, such as
    /// prlimit): keepalive's path and its arguments are appended to it.
    pub fn start_with(mut launcher: Command, config: &Path, extra: &[&str]) -> Agent {
        launcher
            .arg(crate::cli::keepalive())
            .args(["agent", "--config"])
            .arg(config)
            .args(extra);
        Agent::spawn(launcher)
    }

    fn spawn(mut command: Command) -> Agent {
        command.stderr(Stdio::piped());
        let mut child = command.spawn().expect("keepalive starts");
        let stderr = child.stderr.take().expect("piped");
        let log = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let writer = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let (lines, changed) = &*writer;
                lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                changed.notify_all();
            }
        });
        let mut agent = Agent {
            child,
            log,
            address: String::new(),
        };
        let started = agent.wait_for(0, |l| l.contains("serving /metrics and /healthz on "));
        agent.address = started.rsplit(' ').next().expect("an address").to_string();
        agent
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// How many lines it has logged so far: where to look for the next ones from.
    pub fn mark(&self) -> usize {
        self.log.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Every line it logged.
    pub fn lines(&self) -> Vec<String> {
        self.log.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The first line from `from` on that `wanted` accepts, waiting up to 30 s.
    pub fn wait_for(&self, from: usize, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        let (lines, changed) = &*self.log;
        let mut seen = lines.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(line) = seen.iter().skip(from).find(|l| wanted(l)) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "not logged in 30 s; the log:\n{}",
                seen.join("\n")
            );
            seen = changed
                .wait_timeout(seen, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The first line from `from` on that contains all of `words`.
    pub fn wait_for_words(&self, from: usize, words: &[&str]) -> String {
        self.wait_for(from, |l| words.iter().all(|w| l.contains(w)))
    }

    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill with the pid of our own child, not yet reaped (it is reaped only
        // in `wait` or when dropped), so the pid cannot have been reused.
        let sent = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(sent, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Waits (at most 30 s) for it to exit.
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the agent") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not exit in 30 s; the log:\n{}",
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// GET `path` from it: the status code and the body.
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&format!("http://{}{path}", self.address))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `url` with curl: the status code and the body.
pub fn http_get(url: &str) -> (u16, String) {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}", url])
        .output()
        .expect("curl (package curl) is installed");
    let all = text(&output.stdout);
    let (body, code) = all.rsplit_once('\n').expect("curl's status line");
    let code = code.trim().parse().unwrap_or_else(|_| {
        panic!("no answer from {url}: {}", text(&output.stderr));
    });
    (code, body.to_string())
}

/// `dir` relative to the cgroup2 mount, as the configuration and the metrics name it.
pub fn relative(dir: &Path) -> String {
    dir.strip_prefix(mount())
        .expect("under the cgroup2 mount")
        .display()
        .to_string()
}

/// The configuration: `head` (listen, reconcile), then one [[attach]] table per
/// (cgroup directory, further lines).
pub fn config(head: &str, tables: &[(&Path, &str)]) -> String {
    let mut text = format!("{head}\n");
    for (dir, lines) in tables {
        text.push_str(&format!(
            "\n[[attach]]\ncgroup = {:?}\n{lines}\n",
            relative(dir)
        ));
    }
    text
}

/// The ids of keepalive's programs attached to `dir` itself, as bpftool reports them.
pub fn attached_ids(dir: &Path) -> Vec<u64> {
    let output = Command::new("bpftool")
        .args(["cgroup", "show"])
        .arg(dir)
        .arg("-j")
        .output()
        .expect("bpftool (package bpftool) is installed");
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
    list.as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| matches!(e["name"].as_str(), Some("on_sockops" | "on_setsockopt")))
                .filter_map(|e| e["id"].as_u64())
                .collect()
        })
        .unwrap_or_default()
}

/// Which of `ids` the kernel still holds, after waiting up to 5 s for them to go: it
/// frees a program a moment after its last reference goes.
pub fn still_loaded(ids: &[u64]) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let output = Command::new("bpftool")
            .args(["prog", "show", "-j"])
            .output()
            .expect("bpftool runs");
        let list: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
        let loaded: Vec<u64> = list
            .as_array()
            .map(|ps| ps.iter().filter_map(|p| p["id"].as_u64()).collect())
            .unwrap_or_default();
        let left: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| loaded.contains(id))
            .collect();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// keepalive's pin directory for the cgroup at `dir` (named by its inode number).
pub fn pin_dir(dir: &Path) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(dir).expect("the cgroup exists").ino();
    Path::new("/sys/fs/bpf/keepalive").join(inode.to_string())
}

/// Whether `program` can be run (found in PATH).
pub fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `promtool check metrics` on `exposition`: its complaints, empty when it has none.
pub fn promtool_complaints(exposition: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (package prometheus) is installed");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(exposition.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool runs");
    let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
    if output.status.success() {
        said
    } else {
        format!("promtool failed ({:?}): {said}", output.status)
    }
}
