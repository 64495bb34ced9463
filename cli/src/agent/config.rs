//! The agent's configuration file, TOML:
//!
//! ```toml
//! listen = "127.0.0.1:9977"   # the metrics server (this is the default)
//! reconcile = "10s"           # how often cgroups are checked (the default)
//!
//! [[attach]]
//! cgroup = "system.slice/nginx.service"
//! idle = "1m"                 # or 60
//! interval = "10s"
//! count = 5
//! user_timeout = "auto"
//! mode = "on"
//! existing = true            # also the connections open at the attach
//! root = false                # true to allow cgroup = "/", the root cgroup
//! exclude_peer = ["127.0.0.0/8", "::1/128"]   # filters: peer, exclude_peer, port,
//!                             # direction; other connections fall through
//!
//! [[attach.rule]]             # the first rule a connection matches gives its
//! name = "database"           # settings; what it leaves out comes from the table
//! port = 5432
//! idle = "4m"
//! ```
//!
//! Every value is parsed by keepalive-config's own parsers, so a table accepts and
//! refuses exactly what the options of `keepalive cgroup attach` do; a timing may be
//! written as a number or as a string with units. Every error names the line.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use keepalive_cgroup::rules::Policy;
use keepalive_config::{Config, Var};
use serde::Deserialize;
use toml::Spanned;

use crate::policy::{RawRule, SETTING_KEYS, filter_of, rules_of};
use crate::toml_file::{self, FileError, Wrong, refused, word};

/// The address served when the file names none.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9977";
/// How often cgroups are checked when the file says nothing.
pub const DEFAULT_RECONCILE: Duration = Duration::from_secs(10);

/// A configuration the agent can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub listen: SocketAddr,
    /// How often absent cgroups are looked for and attachments checked.
    pub reconcile: Duration,
    /// In the order of the file; no two name the same cgroup.
    pub tables: Vec<Table>,
}

/// One `[[attach]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Relative to the cgroup2 mount (`system.slice/nginx.service`), `/` for the root
    /// cgroup: the `cgroup` label of the metrics.
    pub cgroup: String,
    /// The settings, from [`Config::DEFAULT`] (the agent's own environment is not
    /// read), with the table's filters and rules.
    pub policy: Policy,
    /// Whether connections already open in the cgroup are to be changed too.
    pub existing: bool,
    /// Whether `cgroup` may be the root cgroup.
    pub root: bool,
    /// Where the table starts, for messages.
    pub line: usize,
}

/// Reads and checks `file`; `mount` is the cgroup2 mount, which an absolute cgroup
/// path may start with.
pub fn load(file: &Path, mount: &Path) -> Result<Plan, FileError> {
    toml_file::read(file, |text| parse(text, mount))
}

/// The file as written, with where each value is.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    listen: Option<Spanned<String>>,
    reconcile: Option<Spanned<toml::Value>>,
    #[serde(default)]
    attach: Vec<Spanned<RawTable>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    cgroup: Spanned<String>,
    mode: Option<Spanned<toml::Value>>,
    idle: Option<Spanned<toml::Value>>,
    interval: Option<Spanned<toml::Value>>,
    count: Option<Spanned<toml::Value>>,
    user_timeout: Option<Spanned<toml::Value>>,
    peer: Option<Spanned<toml::Value>>,
    exclude_peer: Option<Spanned<toml::Value>>,
    port: Option<Spanned<toml::Value>>,
    direction: Option<Spanned<toml::Value>>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
    #[serde(default)]
    existing: bool,
    #[serde(default)]
    root: bool,
}

fn parse(text: &str, mount: &Path) -> Result<Plan, Wrong> {
    let raw: RawPlan = toml::from_str(text).map_err(Wrong::toml)?;
    let listen = match &raw.listen {
        None => DEFAULT_LISTEN.parse().expect("a valid address"),
        Some(listen) => listen.get_ref().parse().map_err(|_| {
            Wrong::at(
                listen,
                format!(
                    "listen = {:?} is not an address and port; accepted: such as \
                     127.0.0.1:9977 or [::1]:9977",
                    listen.get_ref()
                ),
            )
        })?,
    };
    let reconcile = match &raw.reconcile {
        None => DEFAULT_RECONCILE,
        Some(value) => {
            let raw_word = word("reconcile", value)?;
            let seconds = keepalive_config::seconds(&raw_word)
                .map_err(|e| refused("reconcile", value, e, Var::Interval))?;
            Duration::from_secs(seconds.into())
        }
    };
    let mut tables: Vec<Table> = Vec::new();
    for raw_table in &raw.attach {
        let table = table(raw_table, mount)?;
        if let Some(first) = tables.iter().find(|t| t.cgroup == table.cgroup) {
            return Err(Wrong::at(
                &raw_table.get_ref().cgroup,
                format!(
                    "cgroup {:?} has a table already, at line {}; one table per cgroup",
                    table.cgroup, first.line
                ),
            ));
        }
        tables.push(Table {
            line: toml_file::line_of(text, raw_table.span().start),
            ..table
        });
    }
    Ok(Plan {
        listen,
        reconcile,
        tables,
    })
}

fn table(raw: &Spanned<RawTable>, mount: &Path) -> Result<Table, Wrong> {
    let fields = raw.get_ref();
    let cgroup = cgroup_label(fields.cgroup.get_ref(), mount)
        .map_err(|why| Wrong::at(&fields.cgroup, why))?;
    if cgroup == "/" && !fields.root {
        return Err(Wrong::at(
            &fields.cgroup,
            "cgroup = \"/\" is the root cgroup, which holds every process on the machine; \
             add root = true if that is what you mean"
                .into(),
        ));
    }
    let mut config = Config::DEFAULT;
    for (&(key, var), value) in SETTING_KEYS.iter().zip([
        &fields.mode,
        &fields.idle,
        &fields.interval,
        &fields.count,
        &fields.user_timeout,
    ]) {
        if let Some(value) = value {
            let raw_word = word(key, value)?;
            config
                .set(var, &raw_word)
                .map_err(|e| refused(key, value, e, var))?;
        }
    }
    let filter = filter_of([
        &fields.peer,
        &fields.exclude_peer,
        &fields.port,
        &fields.direction,
    ])?;
    let policy = Policy {
        config,
        filter,
        rules: rules_of(&fields.rule)?
            .iter()
            .map(|spec| spec.resolve(&config))
            .collect(),
    };
    policy
        .check()
        .map_err(|why| Wrong::at(&fields.cgroup, why))?;
    Ok(Table {
        cgroup,
        policy,
        existing: fields.existing,
        root: fields.root,
        line: 0,
    })
}

/// The cgroup's path relative to the cgroup2 mount, as status labels it. A relative
/// path and an absolute one as systemd writes it (`/system.slice/nginx.service`) both
/// mean the same place under the mount; so does a path that starts with the mount
/// itself. `.` and `..` are refused, as `keepalive cgroup attach` refuses them.
fn cgroup_label(written: &str, mount: &Path) -> Result<String, String> {
    let mut parts: Vec<&str> = written.split('/').filter(|p| !p.is_empty()).collect();
    if written.is_empty() {
        return Err(
            "cgroup is empty; accepted: a path relative to the cgroup2 mount, \
                    such as system.slice/nginx.service"
                .into(),
        );
    }
    if parts.iter().any(|p| *p == "." || *p == "..") {
        return Err(format!(
            "cgroup = {written:?}: `.` and `..` are not accepted; write the path from \
             the cgroup2 mount, such as system.slice/nginx.service"
        ));
    }
    let mount = mount.to_string_lossy();
    let mount_parts: Vec<&str> = mount.split('/').filter(|p| !p.is_empty()).collect();
    if written.starts_with('/') && parts.starts_with(&mount_parts) {
        parts.drain(..mount_parts.len());
    }
    Ok(if parts.is_empty() {
        "/".to_string()
    } else {
        parts.join("/")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use keepalive_config::{Mode, UserTimeout};

    const MOUNT: &str = "/sys/fs/cgroup/unified";

    fn parse_here(text: &str) -> Result<Plan, Wrong> {
        parse(text, Path::new(MOUNT))
    }

    fn wrong(text: &str) -> (usize, String) {
        let wrong = parse(text, Path::new(MOUNT)).expect_err("refused");
        let line = wrong
            .at
            .map(|span| toml_file::line_of(text, span.start))
            .unwrap_or(0);
        (line, wrong.message)
    }

    #[test]
    fn a_full_table_reads_as_the_options_would() {
        let plan = parse_here(
            "listen = \"[::1]:9100\"\nreconcile = \"1m\"\n\n[[attach]]\n\
             cgroup = \"/sys/fs/cgroup/unified/system.slice/nginx.service/\"\nidle = \"1m30s\"\ninterval = 10\n\
             count = 4\nuser_timeout = \"auto\"\nmode = \"FORCE\"\nexisting = true\n\n\
             [[attach]]\ncgroup = \"web\"\nuser_timeout = 30000\n",
        )
        .expect("accepted");
        assert_eq!(plan.listen, "[::1]:9100".parse().unwrap());
        assert_eq!(plan.reconcile, Duration::from_secs(60));
        let first = &plan.tables[0];
        assert_eq!(first.cgroup, "system.slice/nginx.service");
        assert_eq!(first.line, 4);
        assert_eq!(
            first.policy.config,
            Config {
                mode: Mode::Force,
                idle: Some(90),
                interval: Some(10),
                count: Some(4),
                user_timeout: Some(UserTimeout::Auto),
                ..Config::DEFAULT
            }
        );
        assert!(first.existing && !first.root);
        assert_eq!(plan.tables[1].line, 13);
        assert_eq!(
            plan.tables[1].policy.config.user_timeout,
            Some(UserTimeout::Millis(30000))
        );
    }

    #[test]
    fn defaults_for_an_empty_file() {
        let plan = parse_here("").expect("accepted");
        assert_eq!(plan.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(plan.reconcile, DEFAULT_RECONCILE);
        assert!(plan.tables.is_empty());
    }

    #[test]
    fn refused_values_name_their_line_and_what_is_accepted() {
        let (line, message) = wrong("[[attach]]\ncgroup = \"a\"\n\ncount = 0\n");
        assert_eq!(line, 4);
        assert_eq!(
            message,
            "count = 0 is out of range; accepted: a whole number from 1 to 127"
        );
        let (line, message) = wrong("[[attach]]\ncgroup = \"a\"\nidle = \"soon\"\n");
        assert_eq!(line, 3);
        assert!(message.starts_with("idle = \"soon\" is not valid; accepted: whole seconds"));
        let (line, message) = wrong("reconcile = 1.5\n");
        assert_eq!(
            (line, message.as_str()),
            (
                1,
                "reconcile = 1.5 is a float; accepted: a string or a whole number"
            )
        );
        let (line, message) = wrong("listen = \"localhost\"\n");
        assert_eq!(line, 1);
        assert!(message.contains("not an address and port"), "{message}");
    }

    #[test]
    fn toml_errors_unknown_keys_and_missing_cgroups_name_their_line() {
        let (line, message) = wrong("[[attach]]\ncgroup = \"a\"\nidel = 5\n");
        assert_eq!(line, 3);
        assert!(message.contains("idel"), "{message}");
        let (line, _) = wrong("listen = \"127.0.0.1:1\"\n[[attach]\n");
        assert_eq!(line, 2);
        let (line, message) = wrong("\n[[attach]]\nidle = 5\n");
        assert_eq!(line, 2);
        assert!(message.contains("cgroup"), "{message}");
        let (line, message) = wrong("[[attach]]\ncgroup = \"a\"\nexisting = \"yes\"\n");
        assert_eq!(line, 3);
        assert!(message.contains("bool"), "{message}");
    }

    #[test]
    fn one_table_per_cgroup_and_the_root_only_when_asked() {
        let (line, message) =
            wrong("[[attach]]\ncgroup = \"a/b\"\n[[attach]]\ncgroup = \"/a/b\"\n");
        assert_eq!(line, 4);
        assert!(message.contains("line 1"), "{message}");
        let (line, message) = wrong("[[attach]]\ncgroup = \"/\"\n");
        assert_eq!(line, 2);
        assert!(message.contains("root = true"), "{message}");
        let plan = parse_here("[[attach]]\ncgroup = \"/\"\nroot = true\n").expect("accepted");
        assert_eq!(plan.tables[0].cgroup, "/");
        let (_, message) = wrong("[[attach]]\ncgroup = \"a/../b\"\n");
        assert!(message.contains("`..`"), "{message}");
        let (_, message) = wrong("[[attach]]\ncgroup = \"\"\n");
        assert!(message.contains("empty"), "{message}");
    }
}
