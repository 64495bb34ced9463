//! Rules and filters as people write them: on the command line (`--peer`, `--port`,
//! `--rule "port=5432 idle=60"`), in a rules file (`--rules FILE`, `[[rule]]` tables),
//! and in the agent's configuration (`[[attach.rule]]`). Every form goes through the
//! same keys and parsers, so each accepts and refuses the same values with the same
//! words.
//!
//! ```toml
//! [[rule]]
//! name = "database"          # the `rule` label of its metrics (else its number)
//! port = 5432                # or "5432,6432", or [5432, "7000-7100"]
//! peer = ["10.0.0.0/8"]      # or a string, CIDRs separated by commas
//! exclude_peer = "10.9.0.0/16"
//! direction = "out"          # out, in or both (the default)
//! idle = "4m"                # any of idle, interval, count, user_timeout, mode:
//! interval = 30              # those it leaves out come from the attachment
//! ```

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use keepalive_cgroup::layout::MAX_RULES;
use keepalive_cgroup::rules::{
    Cidr, Direction, Filter, List, PortRange, Rule, accepted, hidden_by, name_taken, unmapped,
};
use keepalive_config::{Config, Var};
use serde::Deserialize;
use toml::Spanned;

use crate::toml_file::{self, FileError, Wrong};

/// A rule as written: its filters, and the settings it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    pub name: Option<String>,
    pub filter: Filter,
    /// Checked already: each parses.
    settings: Vec<(Var, Vec<u8>)>,
}

impl RuleSpec {
    const EMPTY: RuleSpec = RuleSpec {
        name: None,
        filter: Filter::ANY,
        settings: Vec::new(),
    };

    /// The rule under a table with `table`'s settings: what the rule names, over them.
    pub fn resolve(&self, table: &Config) -> Rule {
        let mut config = *table;
        for (var, raw) in &self.settings {
            config
                .set(*var, raw)
                .expect("checked when the rule was read");
        }
        Rule {
            name: self.name.clone(),
            filter: self.filter.clone(),
            config,
        }
    }
}

/// A connection that already exists as the filters take it: its peer's address, its
/// port (the peer's for a connection it made, its own for one it accepted) and its
/// direction. A connection counts as accepted when a listener of its network namespace
/// (`listening`) holds its local address and port, or the port on every address: the
/// kernel keeps no flag for it.
pub fn as_filters_see(
    local: SocketAddr,
    remote: SocketAddr,
    listening: &HashSet<SocketAddr>,
) -> (IpAddr, u16, Direction) {
    // 0.0.0.0 holds every IPv4 address; [::] every address of both families (unless
    // IPV6_V6ONLY, which /proc does not show).
    let holds = |l: &SocketAddr| match unmapped(l.ip()) {
        IpAddr::V4(v4) if v4.is_unspecified() => unmapped(local.ip()).is_ipv4(),
        any if any.is_unspecified() => true,
        ip => ip == unmapped(local.ip()),
    };
    let accepted = listening
        .iter()
        .any(|l| l.port() == local.port() && holds(l));
    if accepted {
        (remote.ip(), local.port(), Direction::In)
    } else {
        (remote.ip(), remote.port(), Direction::Out)
    }
}

/// The settings keys of a rule or an agent's table, and what they set.
pub const SETTING_KEYS: [(&str, Var); 5] = [
    ("mode", Var::Mode),
    ("idle", Var::Idle),
    ("interval", Var::Interval),
    ("count", Var::Count),
    ("user_timeout", Var::UserTimeout),
];

/// The filter keys, as the rules file and the agent write them; the options are the
/// same with dashes (`--exclude-peer`).
pub const FILTER_KEYS: [&str; 4] = ["peer", "exclude_peer", "port", "direction"];

/// Sets the filter `key` (one of [`FILTER_KEYS`]) from its text; lists add to what
/// the filter holds. The message says what is wrong and what is accepted.
pub fn set_filter(filter: &mut Filter, key: &str, text: &str) -> Result<(), String> {
    match key {
        "peer" => filter.peer.0.extend(cidrs(text)?.0),
        "exclude_peer" => filter.exclude_peer.0.extend(cidrs(text)?.0),
        "port" => filter.port.0.extend(ports(text)?.0),
        "direction" => filter.direction = direction(text)?,
        other => unreachable!("{other} is not a filter key"),
    }
    Ok(())
}

/// `--peer`, `--exclude-peer`, and the rules' `peer` and `exclude_peer`.
pub fn cidrs(text: &str) -> Result<List<Cidr>, String> {
    text.parse()
        .map_err(|e| format!("{e}; accepted: {}", accepted::CIDRS))
}

/// `--port`, and the rules' `port`.
pub fn ports(text: &str) -> Result<List<PortRange>, String> {
    text.parse()
        .map_err(|e| format!("{e}; accepted: {}", accepted::PORTS))
}

/// `--direction`, and the rules' `direction`.
pub fn direction(text: &str) -> Result<Direction, String> {
    text.parse()
        .map_err(|e| format!("{e}; accepted: {}", accepted::DIRECTION))
}

/// `--rule "name=db port=5432 idle=60"`: KEY=VALUE words separated by spaces, with the
/// keys of a rules file.
pub fn parse_words(text: &str) -> Result<RuleSpec, String> {
    let mut rule = RuleSpec::EMPTY;
    let mut seen: Vec<&str> = Vec::new();
    for word in text.split_whitespace() {
        let Some((key, value)) = word.split_once('=') else {
            return Err(format!("{word:?} is not KEY=VALUE; {}", keys_accepted()));
        };
        let written = value;
        let value = unquoted(value);
        let refused = |why: String| format!("{key}={value}: {why}");
        if value.contains(['"', '\'']) {
            return Err(format!(
                "{key}={written}: --rule takes values without quotes (one pair around a \
                 value is allowed)"
            ));
        }
        if value.ends_with(',') {
            return Err(refused(
                "ends with a comma: --rule words are separated by spaces, so a list is \
                 written without them (peer=10.0.0.0/8,192.168.0.0/16)"
                    .into(),
            ));
        }
        // A list key adds up, as repeated --peer and --port do; any other says one thing.
        let is_list = matches!(key, "peer" | "exclude_peer" | "port");
        if !is_list && seen.contains(&key) {
            return Err(refused(format!("{key} is given twice")));
        }
        seen.push(key);
        if key == "name" {
            rule.name = Some(check_name(value).map_err(refused)?);
        } else if FILTER_KEYS.contains(&key) {
            set_filter(&mut rule.filter, key, value).map_err(refused)?;
        } else if let Some((_, var)) = SETTING_KEYS.iter().find(|(k, _)| *k == key) {
            check_setting(*var, value.as_bytes())
                .map_err(|e| refused(format!("{e}; accepted: {}", var.accepted())))?;
            rule.settings.push((*var, value.as_bytes().to_vec()));
        } else {
            return Err(format!(
                "{key:?} is not a key of a rule; {}",
                keys_accepted()
            ));
        }
    }
    if seen.is_empty() {
        return Err(format!("the rule is empty; {}", keys_accepted()));
    }
    Ok(rule)
}

/// A value without one pair of quotes around it, as a shell user may write
/// `name="db"` out of habit.
fn unquoted(value: &str) -> &str {
    for quote in ['"', '\''] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|v| v.strip_suffix(quote))
        {
            return inner;
        }
    }
    value
}

/// Whether the library's parser takes `raw` for `var`.
fn check_setting(var: Var, raw: &[u8]) -> Result<(), keepalive_config::ValueError> {
    let mut scratch = Config::DEFAULT;
    scratch.set(var, raw)
}

fn keys_accepted() -> String {
    let settings: Vec<&str> = SETTING_KEYS.iter().map(|(k, _)| *k).collect();
    format!(
        "accepted: name, {}, {}",
        FILTER_KEYS.join(", "),
        settings.join(", ")
    )
}

fn check_name(name: &str) -> Result<String, String> {
    keepalive_cgroup::rules::check_name(name).map(|()| name.to_string())
}

/// The filter a TOML table's filter keys give.
pub fn filter_of(values: [&Option<Spanned<toml::Value>>; 4]) -> Result<Filter, Wrong> {
    let mut filter = Filter::ANY;
    for (key, value) in FILTER_KEYS.into_iter().zip(values) {
        if let Some(value) = value {
            let text = toml_file::list(key, value)?;
            set_filter(&mut filter, key, &text).map_err(|why| {
                Wrong::at(
                    value,
                    format!("{key} = {}: {why}", toml_file::shown(value.get_ref())),
                )
            })?;
        }
    }
    Ok(filter)
}

/// A `[[rule]]` (or `[[attach.rule]]`) table, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    name: Option<Spanned<String>>,
    peer: Option<Spanned<toml::Value>>,
    exclude_peer: Option<Spanned<toml::Value>>,
    port: Option<Spanned<toml::Value>>,
    direction: Option<Spanned<toml::Value>>,
    mode: Option<Spanned<toml::Value>>,
    idle: Option<Spanned<toml::Value>>,
    interval: Option<Spanned<toml::Value>>,
    count: Option<Spanned<toml::Value>>,
    user_timeout: Option<Spanned<toml::Value>>,
}

impl RawRule {
    pub fn spec(&self) -> Result<RuleSpec, Wrong> {
        let filter = filter_of([&self.peer, &self.exclude_peer, &self.port, &self.direction])?;
        let mut settings = Vec::new();
        for ((key, var), value) in SETTING_KEYS.iter().zip([
            &self.mode,
            &self.idle,
            &self.interval,
            &self.count,
            &self.user_timeout,
        ]) {
            if let Some(value) = value {
                let raw = toml_file::word(key, value)?;
                check_setting(*var, &raw).map_err(|e| toml_file::refused(key, value, e, *var))?;
                settings.push((*var, raw));
            }
        }
        let name = match &self.name {
            Some(name) => Some(check_name(name.get_ref()).map_err(|why| Wrong::at(name, why))?),
            None => None,
        };
        Ok(RuleSpec {
            name,
            filter,
            settings,
        })
    }
}

/// Every `[[rule]]` of a TOML text, with what can be refused at a rule's own line: too
/// many, a name taken already, a rule with no keys at all (it would match every
/// connection, set nothing, and hide every rule after it).
pub fn rules_of(raw: &[Spanned<RawRule>]) -> Result<Vec<RuleSpec>, Wrong> {
    if let Some(extra) = raw.get(MAX_RULES) {
        return Err(Wrong::at(
            extra,
            format!(
                "rule {}: an attachment holds at most {MAX_RULES} rules",
                MAX_RULES + 1
            ),
        ));
    }
    let mut specs: Vec<RuleSpec> = Vec::new();
    for rule in raw {
        let spec = rule.get_ref().spec()?;
        if spec == RuleSpec::EMPTY {
            return Err(Wrong::at(
                rule,
                format!(
                    "rule {} is empty: it sets nothing and takes every connection; {}",
                    specs.len() + 1,
                    keys_accepted()
                ),
            ));
        }
        if specs.last().is_some_and(|s| s.filter.is_any()) {
            // At the rule to fix: the one before this.
            return Err(Wrong::at(&raw[specs.len() - 1], hidden_by(specs.len())));
        }
        if let Some(first) = specs
            .iter()
            .position(|s| s.name.is_some() && s.name == spec.name)
        {
            let name = rule.get_ref().name.as_ref().expect("named");
            return Err(Wrong::at(
                name,
                name_taken(specs.len() + 1, name.get_ref(), first + 1),
            ));
        }
        specs.push(spec);
    }
    Ok(specs)
}

/// `--rules FILE`: a file of `[[rule]]` tables.
pub fn load(file: &Path) -> Result<Vec<RuleSpec>, FileError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawRules {
        #[serde(default)]
        rule: Vec<Spanned<RawRule>>,
    }
    toml_file::read(file, |text| {
        let raw: RawRules = toml::from_str(text).map_err(Wrong::toml)?;
        let specs = rules_of(&raw.rule)?;
        // The limits of the maps, which no single line is to blame for.
        let rules = specs.iter().map(|s| s.resolve(&Config::DEFAULT)).collect();
        keepalive_cgroup::rules::Policy {
            rules,
            ..keepalive_cgroup::rules::Policy::from(Config::DEFAULT)
        }
        .check()
        .map_err(|message| Wrong { at: None, message })?;
        Ok(specs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use keepalive_config::Mode;

    #[test]
    fn words_give_a_rule_over_its_table() {
        let spec = parse_words("name=db  port=5432,6432 peer=10.0.0.0/8 idle=1m mode=force")
            .expect("accepted");
        let table = Config {
            mode: Mode::On,
            interval: Some(10),
            ..Config::DEFAULT
        };
        let rule = spec.resolve(&table);
        assert_eq!(rule.name.as_deref(), Some("db"));
        assert_eq!(rule.filter.to_string(), "peer 10.0.0.0/8, port 5432,6432");
        assert_eq!(rule.config.idle, Some(60));
        assert_eq!(rule.config.interval, Some(10), "from the table");
        assert_eq!(rule.config.mode, Mode::Force);
    }

    #[test]
    fn a_connection_is_accepted_when_a_listener_holds_its_local_address() {
        let at = |text: &str| -> SocketAddr { text.parse().unwrap() };
        let peer = at("10.0.0.9:40000");
        let on = |listeners: &[&str], local: &str| {
            let listening = listeners.iter().map(|l| at(l)).collect();
            as_filters_see(at(local), peer, &listening)
        };
        let peer_ip = peer.ip();
        assert_eq!(
            on(&["127.0.0.2:8080"], "127.0.0.2:8080"),
            (peer_ip, 8080, Direction::In)
        );
        assert_eq!(
            on(&["127.0.0.2:8080"], "127.0.0.1:8080"),
            (peer_ip, 40000, Direction::Out),
            "bound to the port, on another address"
        );
        assert_eq!(on(&["0.0.0.0:8080"], "127.0.0.1:8080").2, Direction::In);
        assert_eq!(on(&["[::]:8080"], "10.0.0.1:8080").2, Direction::In);
        assert_eq!(
            on(&["0.0.0.0:8080"], "[::1]:8080").2,
            Direction::Out,
            "an IPv4 listener holds no IPv6 address"
        );
        assert_eq!(
            on(&["0.0.0.0:8080"], "[::ffff:10.0.0.1]:8080").2,
            Direction::In
        );
        assert_eq!(
            on(&["[::ffff:0.0.0.0]:8080"], "[::ffff:10.0.0.1]:8080").2,
            Direction::In,
            "the IPv4 wildcard, through an IPv6 socket"
        );
        assert_eq!(
            on(&["[::ffff:10.0.0.1]:8080"], "10.0.0.1:8080").2,
            Direction::In
        );
        assert_eq!(on(&[], "10.0.0.1:8080").2, Direction::Out);
    }

    #[test]
    fn words_take_quotes_off_and_refuse_what_says_two_things() {
        let spec = parse_words("name=\"db\" port='5432' port=6432").expect("accepted");
        assert_eq!(spec.name.as_deref(), Some("db"));
        assert_eq!(spec.filter.port.to_string(), "5432,6432", "lists add up");
        let error = parse_words("direction=in direction=out").unwrap_err();
        assert_eq!(error, "direction=out: direction is given twice");
        assert!(
            parse_words("idle=5 idle=6")
                .unwrap_err()
                .contains("given twice")
        );
        assert!(
            parse_words("name=\"db port=80")
                .unwrap_err()
                .contains("quote")
        );
        assert!(
            parse_words("name=d\"b port=80")
                .unwrap_err()
                .contains("quotes")
        );
        let error = parse_words("name=\"\"db\"\"").unwrap_err();
        assert!(
            error.starts_with("name=\"\"db\"\": --rule takes"),
            "{error}"
        );
        let error = parse_words("peer=10.0.0.0/8, 192.168.0.0/16").unwrap_err();
        assert!(error.contains("ends with a comma"), "{error}");
    }

    #[test]
    fn bad_words_say_which_and_what_is_accepted() {
        let error = parse_words("port=9000-8000").unwrap_err();
        assert!(
            error.starts_with("port=9000-8000: \"9000-8000\" is backwards"),
            "{error}"
        );
        assert!(error.contains("accepted: ports"), "{error}");
        let error = parse_words("prot=80").unwrap_err();
        assert!(error.contains("\"prot\" is not a key of a rule"), "{error}");
        assert!(parse_words("idle=0").unwrap_err().contains("accepted:"));
        assert!(parse_words("port").unwrap_err().contains("not KEY=VALUE"));
        assert!(parse_words("  ").unwrap_err().contains("empty"));
        assert!(
            parse_words("direction=up")
                .unwrap_err()
                .contains("out (connections")
        );
    }

    fn from_toml(text: &str) -> Result<Vec<RuleSpec>, (usize, String)> {
        #[derive(Deserialize)]
        struct RawRules {
            rule: Vec<Spanned<RawRule>>,
        }
        let raw: RawRules = toml::from_str(text).map_err(|e| (0, e.to_string()))?;
        rules_of(&raw.rule).map_err(|w| {
            (
                w.at.map_or(0, |at| toml_file::line_of(text, at.start)),
                w.message,
            )
        })
    }

    #[test]
    fn toml_rules_take_strings_numbers_and_arrays() {
        let rules = from_toml(
            "[[rule]]\nport = 5432\n\n[[rule]]\nname = \"web\"\nport = [80, \"8000-8100\"]\n\
             peer = \"10.0.0.0/8, fd00::/8\"\nexclude_peer = [\"10.9.0.0/16\"]\n\
             direction = \"in\"\ncount = 3\n",
        )
        .expect("accepted");
        assert_eq!(rules[0].filter.port.to_string(), "5432");
        assert_eq!(
            rules[1].filter.to_string(),
            "peer 10.0.0.0/8,fd00::/8, not peer 10.9.0.0/16, port 80,8000-8100, direction in"
        );
        assert_eq!(rules[1].resolve(&Config::DEFAULT).config.count, Some(3));
    }

    #[test]
    fn toml_errors_name_their_line() {
        let (line, message) =
            from_toml("[[rule]]\nport = 80\n[[rule]]\npeer = \"10.0.0.1/8\"\n").unwrap_err();
        assert_eq!(line, 4);
        assert!(message.contains("did you mean 10.0.0.0/8"), "{message}");
        let (line, message) = from_toml("[[rule]]\nidle = 0\n").unwrap_err();
        assert_eq!(line, 2);
        assert!(message.starts_with("idle = 0 is out of range"), "{message}");
        let (line, message) = from_toml("[[rule]]\nport = 1.5\n").unwrap_err();
        assert_eq!(line, 2);
        assert!(message.contains("not a list"), "{message}");
        let (line, message) =
            from_toml("[[rule]]\nport = 1\n\n[[rule]]\nname = \"a\"\nport = 2\n[[rule]]\nname = \"a\"\nport = 3\n")
                .unwrap_err();
        assert_eq!(line, 8);
        assert!(
            message.starts_with("rule 3: the name \"a\" is rule 2's"),
            "{message}"
        );
        let (line, message) =
            from_toml("[[rule]]\nport = 1\n[[rule]]\n[[rule]]\nport = 2\n").unwrap_err();
        assert_eq!(line, 3);
        assert!(message.starts_with("rule 2 is empty"), "{message}");
        let (line, message) =
            from_toml("[[rule]]\nname = \"rest\"\nidle = 5\n[[rule]]\nport = 2\n").unwrap_err();
        assert_eq!(line, 1, "at the rule that hides the others");
        assert!(message.starts_with("rule 1 has no filter"), "{message}");
        assert!(
            from_toml("[[rule]]\nport = 2\n[[rule]]\nidle = 5\n").is_ok(),
            "last: fine"
        );
        let (line, message) = from_toml(&"[[rule]]\nport = 1\n".repeat(128)).unwrap_err();
        assert_eq!(line, 255);
        assert!(message.contains("at most 127"), "{message}");
        let (_, message) = from_toml("[[rule]]\nname = \"\"\n").unwrap_err();
        assert!(message.contains("1 to 63 bytes"), "{message}");
        let (line, message) =
            from_toml("[[rule]]\nport = 1\n[[rule]]\nname = \"7\"\n").unwrap_err();
        assert_eq!(line, 4);
        assert!(message.contains("all digits"), "{message}");
    }
}
