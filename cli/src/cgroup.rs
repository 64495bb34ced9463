//! `keepalive --cgroup -- COMMAND` and `keepalive cgroup ...`: parse, build the same
//! configuration preload mode would read, and hand over to keepalive-cgroup for the
//! cgroups and programs; COMMAND itself is [`supervise`]'s.

use std::os::fd::AsFd;
use std::path::Path;

use keepalive_cgroup::rules::Policy;
use keepalive_cgroup::{RootCgroup, RunCgroup};
use keepalive_config::{Config, Mode, Var};
use serde_json::json;

use crate::args::{
    CgroupAction, CgroupSettings, FilterArgs, RuleArgs, RunArgs, StatusFormat, Timings,
};
use crate::exit;
use crate::supervise::{self, Signals, SpawnError};

/// The configuration for the BPF programs: the caller's KEEP* variables, as the library
/// would read them, with the command-line options on top. Refused values are warned
/// about, as the library does, and the rest still applies.
fn config(timings: &Timings, mode: Option<Mode>) -> Config {
    let values: Vec<(Var, Option<Vec<u8>>)> = Var::ALL
        .into_iter()
        .map(|var| {
            use std::os::unix::ffi::OsStringExt;
            (var, std::env::var_os(var.name()).map(|v| v.into_vec()))
        })
        .collect();
    let parsed = Config::from_lookup(|var| {
        values
            .iter()
            .find(|(v, _)| *v == var)
            .and_then(|(_, value)| value.as_deref())
    });
    for rejected in parsed.rejected() {
        eprintln!("keepalive: {rejected}");
    }
    let mut config = parsed.config;
    config.mode = mode.unwrap_or(config.mode);
    config.idle = timings.idle.or(config.idle);
    config.interval = timings.interval.or(config.interval);
    config.count = timings.count.or(config.count);
    config.user_timeout = timings.user_timeout.or(config.user_timeout);
    config
}

/// The policy of the options: the configuration, limited by the filters, with the
/// rules of `--rules FILE` and then of each `--rule`. A wrong one is said on stderr,
/// and gives the exit status.
fn policy(config: Config, filters: &FilterArgs, rules: &RuleArgs) -> Result<Policy, i32> {
    checked_policy(config, filters, rules).map_err(|message| {
        eprintln!("keepalive: {message}");
        exit::BAD_USAGE
    })
}

fn checked_policy(
    config: Config,
    filters: &FilterArgs,
    rules: &RuleArgs,
) -> Result<Policy, String> {
    let mut specs = match &rules.rules_file {
        Some(file) => crate::policy::load(file).map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    specs.extend(rules.rules.iter().cloned());
    let policy = Policy {
        config,
        filter: filters.filter(),
        rules: specs.iter().map(|spec| spec.resolve(&config)).collect(),
    };
    policy.check()?;
    Ok(policy)
}

/// The policy of `attach` and `pin`'s options.
fn settings_policy(settings: &CgroupSettings) -> Result<Policy, i32> {
    policy(
        config(&settings.timings, settings.mode),
        &settings.filters,
        &settings.rules,
    )
}

/// `keepalive --cgroup [OPTIONS] -- COMMAND`: COMMAND runs in a new child cgroup of
/// keepalive's own, with the programs attached to it; keepalive stays its parent,
/// passes signals on, and removes the cgroup and the programs once COMMAND ended.
pub fn run(args: &RunArgs) -> i32 {
    let policy = match policy(config(&args.timings, args.mode), &args.filters, &args.rules) {
        Ok(policy) => policy,
        Err(status) => return status,
    };
    // Before anything exists that a signal could leave behind.
    let signals = Signals::block();
    let cgroup = match RunCgroup::create(&policy) {
        Ok(cgroup) => cgroup,
        Err(error) => {
            eprintln!("keepalive: {error}");
            return exit::OWN_FAILURE;
        }
    };
    let program = args.command.first().map(|p| p.to_string_lossy());
    let program = program.as_deref().unwrap_or_default();
    let status = match supervise::spawn(&args.command, cgroup.as_fd(), &signals) {
        Ok(child) => supervise::supervise(&child, &signals),
        Err(SpawnError::Exec(error)) => {
            eprintln!("keepalive: {program}: {}", exit::describe(&error));
            exit::for_exec_error(&error)
        }
        Err(SpawnError::Clone(error)) => {
            eprintln!(
                "keepalive: cannot start {program} in the cgroup {}: {}",
                cgroup.path().display(),
                exit::describe(&error)
            );
            exit::OWN_FAILURE
        }
    };
    // After COMMAND, with the signals still blocked: the cgroup goes now, or, if
    // COMMAND left processes in it (a daemon), once they have all exited.
    if cgroup.is_populated() {
        supervise::hand_over(cgroup, &signals);
    }
    status
}

/// `keepalive cgroup ACTION`.
pub fn act(action: &CgroupAction) -> i32 {
    let done = match action {
        CgroupAction::Attach {
            settings,
            root,
            existing,
            cgroup,
        } => {
            let policy = match settings_policy(settings) {
                Ok(policy) => policy,
                Err(status) => return status,
            };
            let attached = keepalive_cgroup::attach(&policy, cgroup, root_cgroup(*root));
            if let (Ok(path), true) = (&attached, *existing) {
                println!("keepalive: attached to {}: {policy}", path.display());
                println!(
                    "keepalive: connections accepted on a listener made outside the cgroup \
                     are not covered"
                );
                return crate::existing::retrofit(path, &policy);
            }
            attached.map(|path| {
                println!("keepalive: attached to {}: {policy}", path.display());
                println!(
                    "keepalive: connections established before now are not covered \
                     (`keepalive apply PID` or `attach --existing` retrofits them), nor \
                     those accepted on a listener made outside the cgroup"
                );
            })
        }
        CgroupAction::Detach { root, cgroup } => {
            keepalive_cgroup::detach(cgroup, root_cgroup(*root))
                .map(|path| println!("keepalive: detached from {}", path.display()))
        }
        CgroupAction::Status {
            format,
            json,
            cgroup,
        } => status(
            cgroup.as_deref(),
            if *json { StatusFormat::Json } else { *format },
        ),
        CgroupAction::Pin { settings, path } => {
            let policy = match settings_policy(settings) {
                Ok(policy) => policy,
                Err(status) => return status,
            };
            keepalive_cgroup::pin(&policy, path).map(|dir| print_unit_lines(&dir, &policy))
        }
    };
    match done {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("keepalive: {error}");
            exit::OWN_FAILURE
        }
    }
}

/// --root given or not.
fn root_cgroup(allowed: bool) -> RootCgroup {
    if allowed {
        RootCgroup::Allow
    } else {
        RootCgroup::Refuse
    }
}

fn status(cgroup: Option<&Path>, format: StatusFormat) -> Result<(), keepalive_cgroup::Error> {
    let found = keepalive_cgroup::status(cgroup)?;
    match format {
        StatusFormat::Json => {
            let list: Vec<_> = found.iter().map(status_json).collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&list).unwrap_or_default()
            );
        }
        StatusFormat::Prometheus => {
            print!(
                "{}",
                crate::metrics::render(&crate::metrics::from_status(&found))
            )
        }
        StatusFormat::Text => print_status(&found),
    }
    Ok(())
}

/// The counters of one cause of dead connections, in the order of `CAUSES`.
const CAUSES: [(&str, &str); 3] = [
    ("keepalive", "timeouts_keepalive"),
    ("retransmission", "timeouts_retransmission"),
    ("connect", "timeouts_connect"),
];

/// Counters `status` shows on lines of their own rather than under "counters".
fn shown_apart(name: &str) -> bool {
    name.starts_with("timeouts_") || name.starts_with("existing_")
}

fn counter(details: &keepalive_cgroup::Details, name: &str) -> u64 {
    details
        .counters
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, value)| *value)
}

fn print_status(found: &[keepalive_cgroup::Attachment]) {
    if found.is_empty() {
        println!(
            "keepalive is not attached to any cgroup, and no `keepalive --cgroup` run is under way"
        );
    }
    for a in found {
        let place = a.cgroup.as_ref().map_or_else(
            || format!("cgroup {} (removed, or outside this process's view)", a.id),
            |p| p.display().to_string(),
        );
        let kind = if a.run {
            " (a `keepalive --cgroup` run)"
        } else {
            ""
        };
        println!("{place}{kind}");
        match &a.state {
            Ok(details) => print_details(details, a.run),
            Err(problem) => println!("  problem:  {problem}"),
        }
        if !a.run {
            println!("  pins:     {}", a.pins.display());
        }
    }
    if !found.is_empty() {
        println!(
            "Covered: connections that processes in the cgroup (and below) make after the \
             attach, and those accepted on listeners they created. Not covered: \
             connections made before, unless `attach --existing` applied the settings to \
             them (`keepalive apply PID` does it for one process), and those accepted on a \
             listener made outside the cgroup (a server moved into it)."
        );
    }
}

fn print_details(details: &keepalive_cgroup::Details, run: bool) {
    if !run {
        let attached = if details.attached {
            "yes"
        } else {
            "NO: the programs are pinned but the kernel has them attached no more; \
             `keepalive cgroup attach` attaches them again"
        };
        println!("  attached: {attached}");
    }
    println!("  settings: {}", details.policy.config);
    if !details.policy.filter.is_any() {
        println!(
            "  only:     {} (other connections are left to the level above)",
            details.policy.filter
        );
    }
    for (i, rule) in details.policy.rules.iter().enumerate() {
        let counts = details.rule_counters.get(i).copied().unwrap_or_default();
        println!(
            "  rule {}:   {} -> {}; connections {}, timeouts: keepalive {}, retransmission {}, connect {}",
            rule.label(i),
            rule.filter,
            rule.config,
            counts[0],
            counts[1],
            counts[2],
            counts[3]
        );
    }
    let counters: Vec<String> = details
        .counters
        .iter()
        .filter(|(name, _)| !shown_apart(name))
        .map(|(name, n)| format!("{} {n}", name.replace('_', " ")))
        .collect();
    println!("  counters: {}", counters.join(", "));
    if details.counting {
        let timeouts: Vec<String> = CAUSES
            .iter()
            .map(|(cause, name)| format!("{cause} {}", counter(details, name)))
            .collect();
        println!(
            "  timeouts: {} (connections the peer stopped answering)",
            timeouts.join(", ")
        );
    } else {
        println!(
            "  timeouts: NOT COUNTED: programs of an earlier version, or their counting \
             link was unpinned; `keepalive cgroup attach` again replaces them"
        );
    }
    let applied = counter(details, "existing_applied");
    if applied > 0 {
        println!(
            "  existing: covered by `attach --existing` ({}): {} changed, {} set",
            match applied {
                1 => "once".to_string(),
                n => format!("{n} times"),
            },
            crate::existing::counted(
                counter(details, "existing_connections") as usize,
                "connection"
            ),
            crate::existing::counted(counter(details, "existing_options") as usize, "option")
        );
    }
}

fn status_json(a: &keepalive_cgroup::Attachment) -> serde_json::Value {
    let mut entry = json!({
        "cgroup": a.cgroup.as_ref().map(|p| p.display().to_string()),
        "cgroup_relative": a.relative,
        "cgroup_id": a.id,
        "run": a.run,
    });
    if !a.run {
        entry["pins"] = json!(a.pins.display().to_string());
    }
    match &a.state {
        Ok(details) => {
            let counters: serde_json::Map<_, _> = details
                .counters
                .iter()
                .map(|(name, n)| (name.to_string(), json!(n)))
                .collect();
            let timeouts: serde_json::Map<_, _> = CAUSES
                .iter()
                .map(|(cause, name)| (cause.to_string(), json!(counter(details, name))))
                .collect();
            entry["filter"] = filter_json(&details.policy.filter);
            entry["rules"] = details
                .policy
                .rules
                .iter()
                .enumerate()
                .map(|(i, rule)| {
                    let counts = details.rule_counters.get(i).copied().unwrap_or_default();
                    let mut entry = json!({
                        "rule": rule.label(i),
                        "name": rule.name,
                        "filter": filter_json(&rule.filter),
                        "connections": counts[0],
                        "timeouts": {
                            "keepalive": counts[1],
                            "retransmission": counts[2],
                            "connect": counts[3],
                        },
                    });
                    put_settings(&mut entry, &rule.config);
                    entry
                })
                .collect();
            entry["attached"] = json!(details.attached);
            entry["counting"] = json!(details.counting);
            put_settings(&mut entry, &details.policy.config);
            entry["counters"] = json!(counters);
            entry["timeouts"] = json!(timeouts);
            entry["existing_covered"] = json!(counter(details, "existing_applied") > 0);
        }
        Err(problem) => entry["problem"] = json!(problem),
    }
    entry
}

/// The settings of an attachment or a rule, as keys of its JSON object.
fn put_settings(object: &mut serde_json::Value, config: &Config) {
    object["mode"] = json!(config.mode.as_str());
    object["idle"] = json!(config.idle);
    object["interval"] = json!(config.interval);
    object["count"] = json!(config.count);
    object["user_timeout"] = json!(config.user_timeout.map(crate::run::user_timeout_word));
}

fn filter_json(filter: &keepalive_cgroup::rules::Filter) -> serde_json::Value {
    json!({
        "peer": texts(&filter.peer.0),
        "exclude_peer": texts(&filter.exclude_peer.0),
        "port": texts(&filter.port.0),
        "direction": filter.direction.as_str(),
    })
}

/// A list as the JSON list of its items' texts.
fn texts<T: ToString>(items: &[T]) -> serde_json::Value {
    json!(items.iter().map(ToString::to_string).collect::<Vec<_>>())
}

fn print_unit_lines(path: &Path, policy: &Policy) {
    println!("keepalive: pinned in {}: {policy}", path.display());
    println!("In the unit's [Service] section:");
    println!("BPFProgram=sock_ops:{}", path.join("sock_ops").display());
    println!(
        "BPFProgram=setsockopt:{}",
        path.join("setsockopt").display()
    );
}
