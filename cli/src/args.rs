//! The command line, declared with clap. Every value the library reads is parsed by
//! keepalive-config's own parsers, so the command refuses exactly what the library
//! would refuse, with the same words.

use std::ffi::OsString;

use clap::{Args, Parser, Subcommand};
use keepalive_cgroup::rules::{Cidr, Direction, Filter, List, PortRange};
use keepalive_config::{LogLevel, Mode, UserTimeout, ValueError, Var};

use crate::policy::{self, RuleSpec};

/// Run a program with TCP keepalive on every TCP socket it opens, or inspect and
/// change the keepalive settings of processes already running.
#[derive(Debug, Parser)]
#[command(
    name = "keepalive",
    version,
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true,
    override_usage = "keepalive [OPTIONS] [--cgroup] [--] COMMAND [ARGS]...\n       \
                      keepalive inspect [--json] PID...\n       \
                      keepalive apply [OPTIONS] [--dry-run] [--json] PID...\n       \
                      keepalive cgroup attach|detach|status|pin ...\n       \
                      keepalive agent --config FILE [--keep-attached]",
    subcommand_negates_reqs = true,
    after_help = "Exit status: the command's own when it runs (128+N when signal N ends it under \
                  --cgroup); 2 for a bad option; 125 when the library cannot be found or cgroup \
                  mode cannot be set up; 126 when COMMAND cannot be executed; 127 when it is \
                  not found.\n\nThe library is looked for in $KEEPALIVE_LIBRARY, next to this \
                  command, then in ../lib (and ../lib/<arch>-linux-gnu, ../lib64) relative to it, \
                  then in /usr/local/lib, /usr/lib/<arch>-linux-gnu, /usr/lib and /usr/lib64."
)]
pub struct Cli {
    /// More diagnostics on standard error (-v, -vv).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub action: Option<Action>,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Action {
    /// Show the TCP sockets of running processes and their keepalive settings, as the
    /// kernel holds them (needs root or CAP_SYS_PTRACE).
    Inspect(InspectArgs),
    /// Turn keepalive on, with the given timings, for the TCP sockets of running
    /// processes, without restarting them (needs root or CAP_SYS_PTRACE).
    Apply(ApplyArgs),
    /// Cgroup mode that outlives the command: attach keepalive's BPF programs to a
    /// cgroup, detach them, show them, or pin them for systemd's BPFProgram=.
    #[command(subcommand)]
    Cgroup(CgroupAction),
    /// A daemon for a host or a node: keeps keepalive attached to the cgroups of a
    /// configuration file and serves their metrics (GET /metrics) and health
    /// (GET /healthz); SIGHUP reloads the file (needs root, or CAP_BPF, CAP_PERFMON
    /// and CAP_NET_ADMIN).
    Agent(crate::agent::AgentArgs),
    /// Write the man pages or shell completions (used by the installer).
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        what: Generate,
    },
}

#[derive(Debug, Subcommand)]
pub enum Generate {
    /// Write keepalive.1 and one page per subcommand into DIR.
    Man { dir: std::path::PathBuf },
    /// Print the completion script for SHELL.
    Completions { shell: clap_complete::Shell },
}

/// `keepalive cgroup ...`.
#[derive(Debug, Subcommand)]
pub enum CgroupAction {
    /// Attach to CGROUP (a cgroup2 directory, relative to the cgroup2 mount, e.g.
    /// system.slice/nginx.service, or absolute under it; `.` and `..` are refused) and pin
    /// under /sys/fs/bpf/keepalive, so that it lasts after this command; attaching again
    /// replaces the settings.
    Attach {
        #[command(flatten)]
        settings: CgroupSettings,
        /// Allow CGROUP to be the root cgroup, which holds every process on the machine.
        #[arg(long)]
        root: bool,
        /// Also apply the settings now to the TCP connections the processes of CGROUP
        /// and below have already established, in every network namespace, as `keepalive
        /// apply` does (needs CAP_SYS_PTRACE to reach their sockets, and for on and skip
        /// CAP_SYS_ADMIN to read another network namespace's sysctls). Following --mode:
        /// force sets every option; on and skip leave the options a program visibly set
        /// itself (SO_KEEPALIVE on, a user timeout, a timing unlike its network
        /// namespace's sysctl); off changes nothing. Each connection is changed once:
        /// those the attachment configured already (made after an attach, or changed by
        /// an earlier --existing) are left as they are, and so are the processes of a
        /// cgroup below with a keepalive attachment of its own. Exit status 1 when some
        /// could not be changed (the programs stay attached), 125 when the attach
        /// itself failed.
        #[arg(long)]
        existing: bool,
        cgroup: std::path::PathBuf,
    },
    /// Detach from CGROUP and remove the pins.
    Detach {
        /// Allow CGROUP to be the root cgroup.
        #[arg(long)]
        root: bool,
        cgroup: std::path::PathBuf,
    },
    /// List the cgroups keepalive is attached to, with their settings and counters.
    #[command(after_help = keepalive_cgroup::layout::COUNTERS_HELP)]
    Status {
        /// text; json; or prometheus, the Prometheus text exposition format (for
        /// node_exporter's textfile collector), which leaves `--cgroup` runs out.
        #[arg(long, value_enum, default_value_t = StatusFormat::Text)]
        format: StatusFormat,
        /// The same as --format json.
        #[arg(long, conflicts_with = "format")]
        json: bool,
        cgroup: Option<std::path::PathBuf>,
    },
    /// Load the programs and pin them in the new directory BPFFS_PATH, for systemd's
    /// BPFProgram=sock_ops:BPFFS_PATH/sock_ops and BPFProgram=setsockopt:BPFFS_PATH/setsockopt.
    Pin {
        #[command(flatten)]
        settings: CgroupSettings,
        #[arg(value_name = "BPFFS_PATH")]
        path: std::path::PathBuf,
    },
}

/// How `keepalive cgroup status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFormat {
    Text,
    Json,
    Prometheus,
}

/// The settings for the BPF programs: the same options, meanings and defaults as
/// running a program under the library, and where they apply.
#[derive(Debug, Args)]
pub struct CgroupSettings {
    #[command(flatten)]
    pub timings: Timings,

    /// on, skip, force or off, as for running a program [KEEPALIVE]
    #[arg(long, value_name = "MODE", value_parser = parse_mode)]
    pub mode: Option<Mode>,

    #[command(flatten)]
    pub filters: FilterArgs,

    #[command(flatten)]
    pub rules: RuleArgs,
}

/// Where the filter and rule options are listed in --help.
const RULES_HEADING: &str = "Filters and rules (cgroup mode and apply: which connections)";

/// Which connections cgroup mode applies to; the others are left exactly as the
/// program makes them, or to a keepalive attachment of a cgroup above. A connection
/// must match every filter given.
#[derive(Debug, Args, Clone, Default)]
pub struct FilterArgs {
    /// Only connections whose peer address is in one of these (IPv4 or IPv6 CIDRs or
    /// addresses; an IPv4-mapped IPv6 peer matches the IPv4 CIDRs)
    #[arg(long, value_name = "CIDR[,CIDR...]", value_parser = policy::cidrs, help_heading = RULES_HEADING)]
    pub peer: Vec<List<Cidr>>,

    /// Only connections whose peer address is in none of these (e.g.
    /// 127.0.0.0/8,::1/128: everything but loopback)
    #[arg(long, value_name = "CIDR[,CIDR...]", value_parser = policy::cidrs, help_heading = RULES_HEADING)]
    pub exclude_peer: Vec<List<Cidr>>,

    /// Only connections on these ports: the peer's port of a connection made with
    /// connect(), the local port of an accepted one
    #[arg(long, value_name = "PORT|LOW-HIGH[,...]", value_parser = policy::ports, help_heading = RULES_HEADING)]
    pub port: Vec<List<PortRange>>,

    /// out: connections made with connect(); in: accepted ones; both (the default)
    #[arg(long, value_name = "DIRECTION", value_parser = policy::direction, help_heading = RULES_HEADING)]
    pub direction: Option<Direction>,
}

impl FilterArgs {
    pub fn filter(&self) -> Filter {
        fn all<T: Clone>(lists: &[List<T>]) -> List<T> {
            List(lists.iter().flat_map(|l| l.0.clone()).collect())
        }
        Filter {
            peer: all(&self.peer),
            exclude_peer: all(&self.exclude_peer),
            port: all(&self.port),
            direction: self.direction.unwrap_or_default(),
        }
    }

    /// The first filter option given, for messages.
    pub fn first_given(&self) -> Option<&'static str> {
        [
            (!self.peer.is_empty(), "--peer"),
            (!self.exclude_peer.is_empty(), "--exclude-peer"),
            (!self.port.is_empty(), "--port"),
            (self.direction.is_some(), "--direction"),
        ]
        .into_iter()
        .find_map(|(given, name)| given.then_some(name))
    }
}

/// Rules: settings of their own for some of the connections, the first rule that
/// matches a connection giving them, and the attachment's settings filling in what a
/// rule does not name.
#[derive(Debug, Args, Clone, Default)]
pub struct RuleArgs {
    /// A rule, as KEY=VALUE words separated by spaces (no spaces inside a value):
    /// its filters (peer, exclude_peer, port, direction), its settings (idle,
    /// interval, count, user_timeout, mode; those it leaves out, mode included, come
    /// from the options above) and a name for its metrics, e.g. --rule "name=db
    /// port=5432 idle=4m". Repeat it for more rules, at most 127; the first that
    /// matches a connection gives its settings
    #[arg(long = "rule", value_name = "KEY=VALUE ...", value_parser = policy::parse_words, help_heading = RULES_HEADING)]
    pub rules: Vec<RuleSpec>,

    /// Rules from a TOML file of [[rule]] tables with the same keys; they come before
    /// any --rule
    #[arg(long = "rules", value_name = "FILE", help_heading = RULES_HEADING)]
    pub rules_file: Option<std::path::PathBuf>,
}

impl RuleArgs {
    pub fn given(&self) -> Option<&'static str> {
        if self.rules_file.is_some() {
            Some("--rules")
        } else if !self.rules.is_empty() {
            Some("--rule")
        } else {
            None
        }
    }
}

/// Running a program under the library.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run COMMAND in a new child cgroup with keepalive's BPF programs attached,
    /// instead of preloading the library: reaches Go, static and musl programs,
    /// io_uring sockets and setuid programs (needs root, or CAP_BPF and CAP_NET_ADMIN).
    #[arg(long)]
    pub cgroup: bool,

    #[command(flatten)]
    pub timings: Timings,

    /// on: keepalive on every TCP socket; skip: only the timings, SO_KEEPALIVE stays as the
    /// program sets it; force: like on, and the program cannot change the values back;
    /// off: the library does nothing [KEEPALIVE]
    #[arg(long, value_name = "MODE", value_parser = parse_mode)]
    pub mode: Option<Mode>,

    /// How much the library reports on standard error: off, error, warn, info or debug
    /// [KEEPALIVE_LOG]
    #[arg(long, value_name = "LEVEL", value_parser = parse_log_level)]
    pub log: Option<LogLevel>,

    #[command(flatten)]
    pub filters: FilterArgs,

    #[command(flatten)]
    pub rules: RuleArgs,

    /// The program to run, and its arguments.
    #[arg(
        value_name = "COMMAND",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<OsString>,
}

/// The timings, shared by running a program and by `apply`.
#[derive(Debug, Args, Clone, Copy, Default)]
pub struct Timings {
    /// Idle time before the first probe: seconds 1-32767, or with units (90s, 5m, 1h30m)
    /// [KEEPIDLE]
    #[arg(long, value_name = "DURATION", value_parser = parse_seconds)]
    pub idle: Option<u16>,

    /// Time between probes: seconds 1-32767, or with units (10s, 1m) [KEEPINTVL]
    #[arg(long, value_name = "DURATION", value_parser = parse_seconds)]
    pub interval: Option<u16>,

    /// Unanswered probes before the connection is dropped: 1-127 [KEEPCNT]
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub count: Option<u8>,

    /// TCP_USER_TIMEOUT: milliseconds, or with units (30s, 2m); auto = idle + interval ×
    /// count; off = the kernel's retransmission limits [KEEPALIVE_USER_TIMEOUT]
    #[arg(long, value_name = "TIMEOUT", value_parser = parse_user_timeout)]
    pub user_timeout: Option<UserTimeout>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The processes to look at.
    #[arg(value_name = "PID", required = true, num_args = 1.., value_parser = clap::value_parser!(i32).range(1..))]
    pub pids: Vec<i32>,

    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The processes to change.
    #[arg(value_name = "PID", required = true, num_args = 1.., value_parser = clap::value_parser!(i32).range(1..))]
    pub pids: Vec<i32>,

    #[command(flatten)]
    pub timings: Timings,

    /// Only the connections these filters match, as cgroup mode would take them (an
    /// accepted connection is one whose local port a listener of its network
    /// namespace holds).
    #[command(flatten)]
    pub filters: FilterArgs,

    /// Show what would change, and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The message for a refused value: what was wrong, then what is accepted, in the
/// library's own words.
fn refused(var: Var, error: ValueError) -> String {
    format!("{error}; accepted: {}", var.accepted())
}

fn parse_with<T>(
    var: Var,
    parse: fn(&[u8]) -> Result<T, ValueError>,
) -> impl Fn(&str) -> Result<T, String> {
    move |raw| parse(raw.as_bytes()).map_err(|error| refused(var, error))
}

fn parse_seconds(raw: &str) -> Result<u16, String> {
    parse_with(Var::Idle, keepalive_config::seconds)(raw)
}

fn parse_count(raw: &str) -> Result<u8, String> {
    parse_with(Var::Count, keepalive_config::count)(raw)
}

fn parse_user_timeout(raw: &str) -> Result<UserTimeout, String> {
    parse_with(Var::UserTimeout, keepalive_config::user_timeout)(raw)
}

fn parse_mode(raw: &str) -> Result<Mode, String> {
    parse_with(Var::Mode, keepalive_config::mode)(raw)
}

fn parse_log_level(raw: &str) -> Result<LogLevel, String> {
    parse_with(Var::Log, keepalive_config::log_level)(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn refusals_reuse_the_library_words() {
        assert_eq!(
            parse_count("0").unwrap_err(),
            "is out of range; accepted: a whole number from 1 to 127"
        );
        assert_eq!(parse_seconds("1m30s"), Ok(90));
    }
}

/// The command line with -v/--verbose placed after the subcommand's name when they
/// come before it (`keepalive -v cgroup status`): clap takes any option before a
/// subcommand for preload mode's own, and then the subcommand's name for COMMAND.
pub fn verbose_after_subcommand(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    use clap::CommandFactory;
    let is_verbose = |arg: &std::ffi::OsString| {
        let arg = arg.to_string_lossy();
        arg == "--verbose"
            || (arg.len() > 1 && arg.starts_with('-') && arg[1..].chars().all(|c| c == 'v'))
    };
    let leading = args.iter().skip(1).take_while(|a| is_verbose(a)).count();
    let Some(next) = args.get(1 + leading) else {
        return args;
    };
    let names = Cli::command();
    let is_subcommand = names
        .get_subcommands()
        .any(|sub| sub.get_name() == next.to_string_lossy());
    if leading == 0 || !is_subcommand {
        return args;
    }
    let mut reordered = vec![args[0].clone(), next.clone()];
    reordered.extend_from_slice(&args[1..1 + leading]);
    reordered.extend_from_slice(&args[2 + leading..]);
    reordered
}

#[cfg(test)]
mod verbose_tests {
    use super::verbose_after_subcommand;

    fn reorder(args: &[&str]) -> Vec<String> {
        verbose_after_subcommand(args.iter().map(Into::into).collect())
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn verbose_before_a_subcommand_moves_after_it() {
        assert_eq!(
            reorder(&["keepalive", "-v", "cgroup", "status"]),
            ["keepalive", "cgroup", "-v", "status"]
        );
        assert_eq!(
            reorder(&["keepalive", "-vv", "--verbose", "inspect", "1"]),
            ["keepalive", "inspect", "-vv", "--verbose", "1"]
        );
    }

    #[test]
    fn everything_else_is_left_as_it_is() {
        for args in [
            &["keepalive", "-v", "--", "cgroup"][..],
            &["keepalive", "-v", "sleep", "1"],
            &["keepalive", "cgroup", "-v", "status"],
            &["keepalive", "--idle", "5", "inspect"],
            &["keepalive"],
        ] {
            assert_eq!(reorder(args), args);
        }
    }
}
