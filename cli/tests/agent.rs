//! `keepalive agent`: a real agent on test cgroups, checked against what the kernel
//! holds (`keepalive cgroup status`, bpftool, the options a connection made in the
//! cgroup reads back) and what it serves. Start, SIGHUP with a changed, an added and
//! a removed table, a broken file on reload, someone else detaching, SIGTERM and
//! SIGINT; cgroups that appear late or go; --keep-attached and adoption; and that
//! nothing is left behind.

#[path = "support/agent.rs"]
mod agent;
#[path = "support/cgroup.rs"]
mod cgroup;
#[path = "support/cli.rs"]
mod cli;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};

use agent::{Agent, attached_ids, config, pin_dir, relative, still_loaded};
use cgroup::{CONFIGURED, TestCgroup, client_in, kernel_defaults, own_cgroup, status_of, strings};
use cli::{keepalive_command, text};
use support::TempDir;

/// The timings of TIMING_OPTIONS (CONFIGURED), as a table's lines.
const TIMINGS: &str = "idle = 7\ninterval = \"3s\"\ncount = 4\nuser_timeout = \"9s\"";

/// A reconcile interval no test waits for: only signals make the agent act.
const ONLY_SIGNALS: &str = "listen = \"127.0.0.1:0\"\nreconcile = \"9h\"";

fn write(file: &Path, text: &str) {
    std::fs::write(file, text).expect("write the configuration");
}

/// What the kernel has of keepalive at `dir`: its programs (by id) and pins.
fn assert_nothing_left(dir: &Path, programs: &[u64]) {
    assert!(status_of(dir).is_none(), "{} still listed", dir.display());
    assert!(
        attached_ids(dir).is_empty(),
        "programs still attached to {}",
        dir.display()
    );
    assert!(!pin_dir(dir).exists(), "pins left for {}", dir.display());
    assert_eq!(
        still_loaded(programs),
        Vec::<u64>::new(),
        "programs left loaded"
    );
}

#[test]
fn a_bad_configuration_at_start_exits_125_naming_file_and_line() {
    let dir = TempDir::new("agent-bad");
    let file = dir.0.join("agent.toml");
    for (written, line, says) in [
        (
            "[[attach]]\ncgroup = \"a\"\n\ncount = 300\n",
            4,
            "count = 300 is out of range",
        ),
        ("listen = \"127.0.0.1:9977\"\n[[attach\n", 2, ""),
        (
            "[[attach]]\ncgroup = \"a\"\nmode = \"always\"\n",
            3,
            "accepted: on, off, skip or force",
        ),
        ("[[attach]]\ncgroup = \"a\"\nidel = 5\n", 3, "idel"),
    ] {
        write(&file, written);
        let output = keepalive_command(&["agent", "--config"])
            .arg(&file)
            .output()
            .expect("keepalive starts");
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(125), "{written:?}: {stderr}");
        let place = format!("keepalive: {}:{line}: ", file.display());
        assert!(stderr.starts_with(&place), "{written:?}: {stderr}");
        assert!(stderr.contains(says), "{written:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
    let missing = dir.0.join("missing.toml");
    let output = keepalive_command(&["agent", "--config"])
        .arg(&missing)
        .output()
        .expect("keepalive starts");
    assert_eq!(output.status.code(), Some(125));
    assert!(
        text(&output.stderr).contains("missing.toml: cannot read it: No such file"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn reloads_update_add_and_remove_a_broken_file_changes_nothing_and_sigterm_detaches_all() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let tmp = TempDir::new("agent-reload");
    let file = tmp.0.join("agent.toml");
    let changed = TestCgroup::new("agent-changed");
    let removed = TestCgroup::new("agent-removed");
    let added = TestCgroup::new("agent-added");
    write(
        &file,
        &config(
            ONLY_SIGNALS,
            &[(&changed.0, TIMINGS), (&removed.0, "idle = 20")],
        ),
    );
    let mut agent = Agent::start(&file, &[]);
    agent.wait_for_words(0, &["attached", &relative(&changed.0), "idle 7s"]);
    agent.wait_for_words(0, &["attached", &relative(&removed.0), "idle 20s"]);
    assert_eq!(client_in(&changed, &[]), strings(CONFIGURED));
    assert_eq!(client_in(&removed, &[])[1], "20");
    let (code, body) = agent.get("/healthz");
    assert_eq!(code, 200, "{body}");
    let (code, metrics) = agent.get("/metrics");
    assert_eq!(code, 200);
    let series = format!(
        "keepalive_attached{{cgroup=\"{}\",mode=\"on\"}} 1",
        relative(&changed.0)
    );
    assert!(metrics.contains(&series), "{metrics}");

    // Changed, removed, added.
    let mark = agent.mark();
    let new_config = config(
        ONLY_SIGNALS,
        &[
            (&changed.0, "idle = \"11s\"\nmode = \"force\""),
            (&added.0, TIMINGS),
        ],
    );
    write(&file, &new_config);
    agent.signal(libc::SIGHUP);
    agent.wait_for_words(mark, &["reloaded", "1 added, 1 changed, 1 removed"]);
    agent.wait_for_words(mark, &["detached", &relative(&removed.0)]);
    agent.wait_for_words(
        mark,
        &[
            "updated",
            &relative(&changed.0),
            "keepalive force, idle 11s",
        ],
    );
    agent.wait_for_words(mark, &["attached", &relative(&added.0)]);
    assert_eq!(client_in(&changed, &[])[1], "11");
    assert_eq!(status_of(&changed.0).expect("listed")["mode"], "force");
    assert!(status_of(&removed.0).is_none(), "removed, still attached");
    assert_eq!(client_in(&removed, &[]), kernel_defaults());
    assert_eq!(client_in(&added, &[]), strings(CONFIGURED));

    // A file that does not parse: logged with file and line, nothing changes.
    let mark = agent.mark();
    write(
        &file,
        &format!("{new_config}\n[[attach]]\ncgroup = \"x\"\nuser_timeout = \"soon\"\n"),
    );
    agent.signal(libc::SIGHUP);
    let place = format!("{}:{}:", file.display(), new_config.lines().count() + 4);
    let refused = agent.wait_for_words(mark, &["reload refused", &place]);
    assert!(
        refused.contains("user_timeout = \"soon\" is not valid"),
        "{refused}"
    );
    assert_eq!(client_in(&changed, &[])[1], "11");
    assert_eq!(client_in(&added, &[]), strings(CONFIGURED));
    assert_eq!(agent.get("/healthz").0, 200);

    // Someone else detaches: unhealthy, named, until the agent attaches it again.
    let detach = keepalive_command(&["cgroup", "detach"])
        .arg(&changed.0)
        .output()
        .expect("starts");
    assert!(detach.status.success(), "{}", text(&detach.stderr));
    let (code, body) = agent.get("/healthz");
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains(&format!(
            "{}: exists and keepalive is not attached",
            relative(&changed.0)
        )),
        "{body}"
    );
    let series = format!(
        "keepalive_attached{{cgroup=\"{}\",mode=\"force\"}} 0",
        relative(&changed.0)
    );
    assert!(agent.get("/metrics").1.contains(&series));
    let mark = agent.mark();
    write(&file, &new_config);
    agent.signal(libc::SIGHUP);
    agent.wait_for_words(mark, &["attached", &relative(&changed.0), "again"]);
    assert_eq!(agent.get("/healthz").0, 200);
    assert_eq!(client_in(&changed, &[])[1], "11");

    let programs = [attached_ids(&changed.0), attached_ids(&added.0)].concat();
    assert_eq!(programs.len(), 4, "two programs per cgroup");
    let mark = agent.mark();
    agent.signal(libc::SIGTERM);
    let status = agent.wait();
    assert_eq!(status.code(), Some(0), "{}", agent.lines().join("\n"));
    agent.wait_for_words(mark, &["detached", &relative(&changed.0), "stopping"]);
    agent.wait_for_words(mark, &["detached", &relative(&added.0), "stopping"]);
    assert_nothing_left(&changed.0, &programs);
    assert_nothing_left(&added.0, &[]);
    assert_eq!(client_in(&changed, &[]), kernel_defaults());
}

#[test]
fn absent_cgroups_are_attached_when_they_appear_and_again_when_detached() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let tmp = TempDir::new("agent-late");
    let file = tmp.0.join("agent.toml");
    let late: PathBuf = own_cgroup().join(format!("ka-test-agent-late-{}", std::process::id()));
    let _ = std::fs::remove_dir(&late);
    write(
        &file,
        &config(
            "listen = \"127.0.0.1:0\"\nreconcile = \"1s\"",
            &[(&late, TIMINGS)],
        ),
    );
    let mut agent = Agent::start(&file, &[]);
    let name = relative(&late);
    agent.wait_for_words(0, &[&name, "does not exist", "attached when it appears"]);
    let (code, body) = agent.get("/healthz");
    assert_eq!(code, 200, "absent is not unhealthy: {body}");
    assert!(body.contains(&format!("{name}: absent")), "{body}");
    let series = format!("keepalive_attached{{cgroup=\"{name}\",mode=\"on\"}} 0");
    assert!(agent.get("/metrics").1.contains(&series));

    // It appears (TestCgroup makes the same directory).
    let mark = agent.mark();
    let cgroup = TestCgroup::new("agent-late");
    assert_eq!(cgroup.0, late);
    agent.wait_for_words(mark, &["attached", &name, "idle 7s"]);
    assert_eq!(client_in(&cgroup, &[]), strings(CONFIGURED));
    assert_eq!(agent.get("/healthz").0, 200);

    // Detached by someone else, pins and all: attached again at the next pass.
    let ids = attached_ids(&late);
    let mark = agent.mark();
    let detach = keepalive_command(&["cgroup", "detach"])
        .arg(&late)
        .output()
        .expect("starts");
    assert!(detach.status.success(), "{}", text(&detach.stderr));
    agent.wait_for_words(mark, &["attached", &name, "again"]);
    assert_eq!(client_in(&cgroup, &[]), strings(CONFIGURED));
    assert_eq!(
        still_loaded(&ids),
        Vec::<u64>::new(),
        "the old programs went"
    );

    // It goes (a restarted unit gets a new cgroup), and comes back.
    let ids = attached_ids(&late);
    let mark = agent.mark();
    drop(cgroup);
    agent.wait_for_words(mark, &[&name, "is gone"]);
    assert_eq!(agent.get("/healthz").0, 200);
    let mark = agent.mark();
    let cgroup = TestCgroup::new("agent-late");
    agent.wait_for(mark, |l| {
        l.contains(&name) && l.contains("attached") && !l.contains("again")
    });
    assert_eq!(client_in(&cgroup, &[]), strings(CONFIGURED));

    let programs = [ids, attached_ids(&late)].concat();
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.wait().code(), Some(0));
    assert_nothing_left(&late, &programs);
}

#[test]
fn keep_attached_leaves_them_for_the_next_agent_which_adopts_them() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let tmp = TempDir::new("agent-keep");
    let file = tmp.0.join("agent.toml");
    let kept = TestCgroup::new("agent-kept");
    write(&file, &config(ONLY_SIGNALS, &[(&kept.0, TIMINGS)]));
    let name = relative(&kept.0);

    let mut first = Agent::start(&file, &["--keep-attached"]);
    first.wait_for_words(0, &["attached", &name]);
    let ids = attached_ids(&kept.0);
    first.signal(libc::SIGTERM);
    assert_eq!(first.wait().code(), Some(0));
    assert!(first.lines().iter().any(|l| l.contains("--keep-attached")));
    assert!(!first.lines().iter().any(|l| l.contains("detached")));
    assert_eq!(
        attached_ids(&kept.0),
        ids,
        "the same programs stay attached"
    );
    assert_eq!(client_in(&kept, &[]), strings(CONFIGURED));

    let mut second = Agent::start(&file, &[]);
    second.wait_for_words(0, &["adopted", &name]);
    assert_eq!(second.get("/healthz").0, 200);
    assert_eq!(client_in(&kept, &[]), strings(CONFIGURED));
    let programs = [ids, attached_ids(&kept.0)].concat();
    second.signal(libc::SIGINT);
    assert_eq!(second.wait().code(), Some(0));
    second.wait_for_words(0, &["detached", &name]);
    assert_nothing_left(&kept.0, &programs);
}

#[test]
fn only_get_of_metrics_and_healthz_is_served() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let tmp = TempDir::new("agent-http");
    let file = tmp.0.join("agent.toml");
    write(&file, ONLY_SIGNALS);
    let mut agent = Agent::start(&file, &[]);
    assert_eq!(agent.get("/nothing").0, 404);
    assert_eq!(agent.get("/healthz?verbose").0, 200);
    // A request followed at once by the client's FIN (printf ... | nc -N) is answered.
    {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&agent.address).expect("connects");
        stream
            .write_all(b"GET /healthz HTTP/1.0\r\n\r\n")
            .expect("writes");
        stream
            .shutdown(std::net::Shutdown::Write)
            .expect("half-closes");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("reads");
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer:?}");
    }
    let posted = std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .arg(format!("http://{}/metrics", agent.address))
        .output()
        .expect("curl runs");
    assert_eq!(text(&posted.stdout), "405");
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.wait().code(), Some(0));
}

/// An agent that attaches nothing, started under prlimit with at most `limit` open files.
fn signals_only_with_open_files(tmp: &TempDir, limit: u32) -> Agent {
    let file = tmp.0.join("agent.toml");
    write(&file, ONLY_SIGNALS);
    let mut command = std::process::Command::new("prlimit");
    command.args([format!("--nofile={limit}:{limit}"), "--".into()]);
    Agent::start_with(command, &file, &[])
}

/// Whoever can reach the port cannot stop the agent from answering or from stopping:
/// 300 connections that send nothing (past the agent's own limit on descriptors), one
/// head that never ends, and a client that pipelines requests and reads no answer.
/// /healthz still answers within a few seconds, the agent is still there, and SIGTERM
/// still ends it at once.
#[test]
fn clients_that_send_or_read_nothing_do_not_block_it() {
    use std::io::Write;
    use std::net::TcpStream;
    let Some(_running) = cgroup::start() else {
        return;
    };
    let tmp = TempDir::new("agent-flood");
    let mut agent = signals_only_with_open_files(&tmp, 128);
    let idle: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(&agent.address).ok())
        .collect();
    let mut endless = TcpStream::connect(&agent.address).expect("connects");
    endless
        .write_all(b"GET /healthz HTTP/1.1\r\nX: ")
        .expect("writes");
    endless.write_all(&[b'a'; 64 * 1024]).ok();
    let mut greedy = TcpStream::connect(&agent.address).expect("connects");
    greedy
        .set_write_timeout(Some(std::time::Duration::from_secs(1)))
        .ok();
    for _ in 0..2000 {
        if greedy
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .is_err()
        {
            break;
        }
    }
    let asked = std::time::Instant::now();
    assert_eq!(agent.get("/healthz").0, 200, "{}", agent.lines().join("\n"));
    assert!(asked.elapsed() < std::time::Duration::from_secs(5));
    assert!(!idle.is_empty());
    agent.signal(libc::SIGTERM);
    let stopping = std::time::Instant::now();
    assert_eq!(agent.wait().code(), Some(0));
    assert!(stopping.elapsed() < std::time::Duration::from_secs(3));
}

/// Silent connections opened all the time (200 a second, each left open) do not delay
/// a probe: request heads are read as they arrive, and a connection that sends nothing
/// holds no worker; under a limit of 64 open files, fewer than the silent connections,
/// the oldest give their descriptors back, so that the probes and the agent's own
/// reading of its attachments get some.
#[test]
fn a_stream_of_silent_connections_does_not_delay_probes() {
    use std::net::TcpStream;
    use std::sync::atomic::{AtomicBool, Ordering};
    let Some(_running) = cgroup::start() else {
        return;
    };
    let tmp = TempDir::new("agent-silent");
    let mut agent = signals_only_with_open_files(&tmp, 64);
    let flooding = std::sync::Arc::new(AtomicBool::new(true));
    let flood = {
        let (address, flooding) = (agent.address.clone(), std::sync::Arc::clone(&flooding));
        std::thread::spawn(move || {
            let mut open = std::collections::VecDeque::new();
            while flooding.load(Ordering::SeqCst) {
                if let Ok(stream) = TcpStream::connect(&address) {
                    open.push_back(stream);
                }
                if open.len() > 400 {
                    open.pop_front();
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(500));
    for _ in 0..5 {
        let asked = std::time::Instant::now();
        assert_eq!(agent.get("/healthz").0, 200);
        let took = asked.elapsed();
        assert!(took < std::time::Duration::from_millis(500), "{took:?}");
    }
    flooding.store(false, Ordering::SeqCst);
    flood.join().expect("the flood ends");
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.wait().code(), Some(0));
}

/// The Kubernetes example as a node runs it: the ConfigMap's agent.toml, with a test
/// cgroup in place of kubepods.slice and a loopback port, under the DaemonSet's own
/// command line (--keep-attached). A connection made in the cgroup gets the example's
/// timings; SIGTERM ends the agent at once (well within the grace period) and leaves
/// the attachment for the next pod, which adopts it.
#[test]
fn the_daemonsets_configuration_runs_as_its_pod_runs_it() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let yaml = std::fs::read_to_string(support::root().join("examples/kubernetes/daemonset.yaml"))
        .expect("the DaemonSet example");
    let command_line = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("command: "))
        .expect("the container's command");
    let command: Vec<String> = serde_json::from_str(command_line).expect("a JSON-style list");
    assert_eq!(command[..3], ["keepalive", "agent", "--config"]);
    let extra: Vec<&str> = command[4..].iter().map(String::as_str).collect();
    assert_eq!(extra, ["--keep-attached"]);
    let start = yaml
        .find("agent.toml: |")
        .expect("the ConfigMap's agent.toml")
        + 13;
    let toml: String = yaml[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.trim_start()))
        .collect();
    let cgroup = TestCgroup::new("daemonset");
    let toml = toml
        .replace(
            "\"kubepods.slice\"",
            &format!("\"{}\"", relative(&cgroup.0)),
        )
        .replace("\"0.0.0.0:9977\"", "\"127.0.0.1:0\"");
    let dir = TempDir::new("agent-daemonset");
    let file = dir.0.join("agent.toml");
    write(&file, &toml);

    let mut pod = Agent::start(&file, &extra);
    assert_eq!(
        client_in(&cgroup, &[]),
        strings(["1", "60", "10", "5", "110000"]),
        "{}\n{toml}",
        pod.lines().join("\n")
    );
    assert_eq!(pod.get("/healthz").0, 200);
    pod.signal(libc::SIGTERM);
    let stopping = std::time::Instant::now();
    assert!(pod.wait().success());
    assert!(stopping.elapsed() < std::time::Duration::from_secs(2));
    assert!(
        status_of(&cgroup.0).is_some(),
        "--keep-attached leaves the attachment"
    );
    let mut next = Agent::start(&file, &extra);
    assert_eq!(next.get("/healthz").0, 200);
    next.signal(libc::SIGTERM);
    assert!(next.wait().success());
    let detach = keepalive_command(&["cgroup", "detach", &cgroup.0.display().to_string()])
        .output()
        .expect("starts");
    assert!(detach.status.success(), "{}", text(&detach.stderr));
}

#[test]
fn rules_in_the_configuration_choose_settings_and_have_metrics_of_their_own() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let tmp = TempDir::new("agent-rules");
    let file = tmp.0.join("agent.toml");
    let cgroup = TestCgroup::new("agent-rules");
    let table = |idle: u32| {
        format!(
            "{TIMINGS}\nexclude_peer = \"127.0.0.2\"\n\n[[attach.rule]]\nname = \"loop\"\n\
             peer = [\"127.0.0.1/32\"]\nidle = {idle}\n\n[[attach.rule]]\nport = 9\ncount = 2\n"
        )
    };
    write(&file, &config(ONLY_SIGNALS, &[(&cgroup.0, &table(21))]));
    let mut agent = Agent::start(&file, &[]);
    let name = relative(&cgroup.0);
    agent.wait_for_words(0, &["attached", &name, "2 rules"]);
    // The rule's idle; the rest from the table.
    let ruled = |idle: &str| strings(["1", idle, "3", "4", "9000"]);
    assert_eq!(client_in(&cgroup, &[]), ruled("21"));
    let entry = status_of(&cgroup.0).expect("attached");
    assert_eq!(entry["rules"][0]["rule"], "loop", "{entry:#}");
    assert_eq!(entry["rules"][1]["rule"], "2", "{entry:#}");
    assert_eq!(entry["filter"]["exclude_peer"][0], "127.0.0.2/32");
    let metrics = agent.get("/metrics").1;
    let sample = format!("keepalive_rule_connections_total{{cgroup=\"{name}\",rule=\"loop\"}} 1");
    assert!(metrics.lines().any(|l| l == sample), "{metrics}");
    assert_eq!(agent::promtool_complaints(&metrics), "");
    assert_eq!(agent.get("/healthz").0, 200);

    // A changed rule is applied in place on SIGHUP.
    write(&file, &config(ONLY_SIGNALS, &[(&cgroup.0, &table(22))]));
    let mark = agent.mark();
    agent.signal(libc::SIGHUP);
    agent.wait_for_words(mark, &["updated", &name]);
    assert_eq!(client_in(&cgroup, &[]), ruled("22"));
    assert_eq!(agent.get("/healthz").0, 200);

    // A bad rule on reload is refused, naming its line, and changes nothing.
    write(
        &file,
        &config(
            ONLY_SIGNALS,
            &[(&cgroup.0, &table(22).replace("port = 9", "port = \"9-1\""))],
        ),
    );
    let mark = agent.mark();
    agent.signal(libc::SIGHUP);
    agent.wait_for_words(mark, &["agent.toml:", "backwards"]);
    assert_eq!(client_in(&cgroup, &[]), ruled("22"));

    let programs = attached_ids(&cgroup.0);
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.wait().code(), Some(0));
    assert_nothing_left(&cgroup.0, &programs);
}
