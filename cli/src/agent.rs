//! `keepalive agent --config FILE`: a daemon for a host or a node. It attaches
//! keepalive to every cgroup its configuration names (replacing the settings of an
//! attachment already there in place), keeps them so (a cgroup that appears later is
//! attached within a reconcile interval, one detached behind its back attached again),
//! and serves `GET /metrics` and `GET /healthz`.
//!
//! Signals: SIGHUP reloads the file (new tables attached, changed ones updated,
//! removed ones detached; a file that does not parse leaves the old configuration in
//! force); SIGTERM and SIGINT detach every configured cgroup and end with status 0
//! (1 when one could not be detached), or leave them attached with `--keep-attached`,
//! for a new agent to adopt without a gap. A bad configuration at start, or an
//! address it cannot listen on, ends it with status 125 before anything is attached.

mod config;
mod owner;
mod serve;
mod signals;
mod standing;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use clap::Args;

use crate::exit;
use config::{Plan, Table};
use owner::{Failures, Owner};
use serve::Server;
use signals::{Asked, Signals};

/// `keepalive agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The configuration: TOML, with `listen = "ADDRESS:PORT"` (default
    /// 127.0.0.1:9977), `reconcile = "DURATION"` (default 10s), and one [[attach]]
    /// table per cgroup, with `cgroup` and the keys idle, interval, count,
    /// user_timeout, mode (as the options), existing and root (true or false), the
    /// filters peer, exclude_peer, port and direction (strings or lists, as
    /// --peer, --exclude-peer, --port and --direction), and [[attach.rule]] tables
    /// with the keys of `--rules` files (name, the filters and the settings; what a
    /// rule leaves out comes from its table).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,

    /// On SIGTERM or SIGINT, leave the attachments in place for the next agent,
    /// which adopts them without a gap.
    #[arg(long)]
    pub keep_attached: bool,
}

/// Runs the agent until SIGTERM or SIGINT; the exit status.
pub fn run(args: &AgentArgs) -> i32 {
    // Before any thread starts, so that every thread has them blocked.
    let signals = Signals::block();
    let (mount, mut plan) = match start(&args.config) {
        Ok(started) => started,
        Err(message) => {
            eprintln!("keepalive: {message}");
            return exit::OWN_FAILURE;
        }
    };
    let shared = serve::Shared {
        tables: Arc::new(RwLock::new(Arc::new(plan.tables.clone()))),
        failures: Failures::default(),
        mount: mount.clone(),
    };
    let server = match Server::start(plan.listen, shared.clone()) {
        Ok(server) => server,
        Err(message) => {
            eprintln!("keepalive: {message}");
            return exit::OWN_FAILURE;
        }
    };
    // Listening first, so that a port in use stops the agent before it attaches
    // anything; said once everything is attached, as the order has it.
    let mut owner = Owner::new(mount.clone(), shared.failures);
    owner.reconcile(&plan.tables);
    log::info!(
        "started with {}: {} cgroup(s); serving /metrics and /healthz on {}",
        args.config.display(),
        plan.tables.len(),
        server.address()
    );
    loop {
        match signals.wait(plan.reconcile) {
            None => owner.reconcile(&plan.tables),
            Some(Asked::Reload) => {
                if let Some(new) = reload(&args.config, &mount, &plan, &mut owner) {
                    plan = new;
                    *shared.tables.write().unwrap_or_else(|e| e.into_inner()) =
                        Arc::new(plan.tables.clone());
                }
                owner.reconcile(&plan.tables);
            }
            Some(Asked::Stop) => break,
        }
    }
    server.stop();
    stop(&plan, &mut owner, args.keep_attached)
}

/// The cgroup2 mount and the configuration, or why the agent cannot start.
fn start(file: &Path) -> Result<(PathBuf, Plan), String> {
    let mount = keepalive_cgroup::cgroup2_mount().map_err(|e| e.to_string())?;
    let plan = config::load(file, &mount).map_err(|e| e.to_string())?;
    Ok((mount, plan))
}

/// Reads the file again: the new configuration, with the cgroups it no longer names
/// detached; `None` (logged with file and line) when it cannot be used.
fn reload(file: &Path, mount: &Path, old: &Plan, owner: &mut Owner) -> Option<Plan> {
    let new = match config::load(file, mount) {
        Ok(new) => new,
        Err(error) => {
            log::error!("reload refused, the configuration in force stays: {error}");
            return None;
        }
    };
    let named =
        |plan: &Plan, cgroup: &str| plan.tables.iter().find(|t| t.cgroup == cgroup).cloned();
    let removed: Vec<&Table> = old
        .tables
        .iter()
        .filter(|t| named(&new, &t.cgroup).is_none())
        .collect();
    let added = new
        .tables
        .iter()
        .filter(|t| named(old, &t.cgroup).is_none())
        .count();
    let changed = new
        .tables
        .iter()
        .filter(|t| named(old, &t.cgroup).is_some_and(|o| !same_settings(&o, t)))
        .count();
    log::info!(
        "reloaded {}: {added} added, {changed} changed, {} removed",
        file.display(),
        removed.len()
    );
    if new.listen != old.listen {
        log::warn!(
            "listen changed from {} to {}: it takes effect when the agent restarts",
            old.listen,
            new.listen
        );
    }
    owner.detach(&removed, "removed from the configuration");
    Some(Plan {
        listen: old.listen,
        ..new
    })
}

fn same_settings(a: &Table, b: &Table) -> bool {
    a.policy == b.policy && a.existing == b.existing && a.root == b.root
}

/// On SIGTERM or SIGINT: detaches every configured cgroup, or leaves them with
/// `--keep-attached`. 0, or 1 when some could not be detached.
fn stop(plan: &Plan, owner: &mut Owner, keep_attached: bool) -> i32 {
    if keep_attached {
        log::info!("stopping; the attachments stay for the next agent (--keep-attached)");
        return 0;
    }
    let all: Vec<&Table> = plan.tables.iter().collect();
    let detached = owner.detach(&all, "the agent is stopping");
    log::info!("stopped");
    if detached { 0 } else { 1 }
}
