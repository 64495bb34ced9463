//! Proof on a real network path for cgroup mode: a Go client and a static client, which
//! the preload library cannot reach, see their connection fail within idle + interval ×
//! count after the server vanishes when run under `keepalive --cgroup`, while the same
//! clients without it still wait. Two network namespaces joined by a veth pair (see
//! tests/support/netns.rs); keepalive enters the client's namespace by setns, which
//! keeps the cgroup2 and bpffs mounts in view (`ip netns exec` would remount /sys).

#[path = "support/cgroup.rs"]
mod cgroup;
#[path = "support/cli.rs"]
mod cli;
#[allow(dead_code)] // the preload tests use the rest of the test bed
#[path = "../../tests/support/netns.rs"]
mod netns;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use cgroup::Client;
use netns::{Bed, Proc, SERVER_V4, SERVER_V6, Side, wait_all};

/// --idle 1 --interval 1 --count 2: a silent peer is given up on after 3 s.
const TIMINGS: [&str; 6] = ["--idle", "1", "--interval", "1", "--count", "2"];
const WINDOW: Duration = Duration::from_secs(3);
/// Allowance for a loaded two-core machine on top of the configured time.
const MARGIN: Duration = Duration::from_secs(4);
/// The controls must still be waiting at three times the window. Without cgroup mode
/// the static client has the kernel's two hours, and Go its own 15 s idle and interval
/// with the kernel's 9 probes: 150 s.
const CONTROL: Duration = Duration::from_secs(9);
const START: Duration = Duration::from_secs(20);

struct Case {
    client: Client,
    host: &'static str,
    port: u16,
    cgroup_mode: bool,
}

impl Case {
    fn label(&self) -> String {
        let mode = if self.cgroup_mode {
            "--cgroup"
        } else {
            "alone"
        };
        format!("{:?} {mode} to {}", self.client, self.host)
    }

    fn spawn(&self, bed: &Bed) -> Proc {
        let port = self.port.to_string();
        let client = self.client.path().display().to_string();
        let mut args: Vec<&str> = Vec::new();
        if self.cgroup_mode {
            args.push("--cgroup");
            args.extend(TIMINGS);
            // Go sets 15 s timings itself after connect; under `on` those would win.
            if self.client == Client::Go {
                args.extend(["--mode", "force"]);
            }
            args.extend(["--", &client]);
        }
        args.extend(["--wait", self.host, &port]);
        let program = if self.cgroup_mode {
            env!("CARGO_BIN_EXE_keepalive")
        } else {
            &client
        };
        bed.spawn(Side::Client, &self.label(), program, &args, false, &[])
    }
}

#[test]
fn go_and_static_clients_detect_a_vanished_server_only_in_cgroup_mode() {
    let Some(_running) = cgroup::start() else {
        return;
    };
    let Some(bed) = Bed::new() else { return };
    let cases: Vec<Case> = [
        (Client::StaticGlibc, SERVER_V4),
        (Client::Go, SERVER_V4),
        (Client::StaticMusl, SERVER_V6),
        (Client::Go, SERVER_V6),
    ]
    .into_iter()
    .flat_map(|(client, host)| [true, false].map(|cgroup_mode| (client, host, cgroup_mode)))
    .zip(7101..)
    .map(|((client, host, cgroup_mode), port)| Case {
        client,
        host,
        port,
        cgroup_mode,
    })
    .collect();
    let addresses: Vec<String> = cases
        .iter()
        .map(|c| {
            if c.host.contains(':') {
                format!("[{}]:{}", c.host, c.port)
            } else {
                format!("{}:{}", c.host, c.port)
            }
        })
        .collect();
    let script = support::root()
        .join("tests/support/net/server.py")
        .display()
        .to_string();
    let mut server_args = vec![script.as_str()];
    server_args.extend(addresses.iter().map(String::as_str));
    let mut server = bed.spawn(
        Side::Server,
        "server",
        support::python3(),
        &server_args,
        false,
        &[],
    );
    server.wait_line("listening", START);
    let mut clients: Vec<(bool, Proc)> = cases
        .iter()
        .map(|c| (c.cgroup_mode, c.spawn(&bed)))
        .collect();
    for (_, client) in &mut clients {
        client.wait_line("connected", START);
    }
    for case in &cases {
        server.wait_line(&format!("accepted {}", case.port), START);
    }

    bed.cut(Side::Server);
    let vanished = Instant::now();
    let (mut with, mut without): (Vec<_>, Vec<_>) = clients.iter_mut().partition(|(with, _)| *with);
    let mut with: Vec<&mut Proc> = with.iter_mut().map(|(_, p)| p).collect();
    wait_all(&mut with, vanished + WINDOW + MARGIN);
    for proc in &mut with {
        let Some((at, status)) = proc.poll() else {
            panic!(
                "{} still waits {:?} after the server vanished\n{}\n{}",
                proc.label,
                vanished.elapsed(),
                proc.report(),
                bed.connections()
            );
        };
        let elapsed = at.saturating_duration_since(vanished);
        assert!(
            proc.lines().iter().any(|(_, l)| l == "error errno=110"),
            "no ETIMEDOUT\n{}",
            proc.report()
        );
        assert!(
            status.success(),
            "keepalive ends with the client's status\n{}",
            proc.report()
        );
        assert!(
            elapsed <= WINDOW + MARGIN,
            "{} took {elapsed:?}\n{}",
            proc.label,
            proc.report()
        );
        println!(
            "{}: connection failed {:.2} s after the server vanished",
            proc.label,
            elapsed.as_secs_f64()
        );
    }
    std::thread::sleep((vanished + CONTROL).saturating_duration_since(Instant::now()));
    for (_, control) in &mut without {
        assert!(
            control.poll().is_none()
                && !control.lines().iter().any(|(_, l)| l.starts_with("error")),
            "{} gave up without cgroup mode\n{}",
            control.label,
            control.report()
        );
        println!(
            "{}: still waiting {:.2} s after the server vanished",
            control.label,
            vanished.elapsed().as_secs_f64()
        );
    }
    bed.assert_default_sysctls();
}
