//! keepalive's attachments in the Prometheus text exposition format (version 0.0.4,
//! what node_exporter's textfile collector reads and `promtool check metrics` lints),
//! for `keepalive cgroup status --format prometheus` and the agent's /metrics.
//!
//! One series per cgroup, labelled with its path relative to the cgroup2 mount:
//! - `keepalive_attached{cgroup,mode}`: 1 while keepalive's programs are attached there
//!   (as configured, for the agent), 0 otherwise;
//! - a counter per kernel counter (bpf/keepalive.h): `keepalive_<name>_total`, except
//!   the three timeouts, which are one counter with a `cause` label;
//! - per rule of an attachment, with a `rule` label (its name, or its number):
//!   `keepalive_rule_connections_total` and `keepalive_rule_timeouts_total{cause}`,
//!   families of their own, so that summing the attachment's counters counts nothing
//!   twice; `keepalive_rule_info{filter,settings}` and, for an attachment limited by
//!   filters, `keepalive_filter_info{filter}`, always 1, say what they are.
//!
//! The encoding (escaping of label values and help texts, HELP and TYPE lines) is the
//! `prometheus` crate's; this module only decides what the series are.

use keepalive_cgroup::Attachment;
use keepalive_cgroup::layout::{COUNTER_MEANINGS, COUNTER_NAMES};
use keepalive_config::Mode;
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

/// The content type of what [`render`] returns, for an HTTP response.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// One cgroup as the metrics show it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    /// The cgroup's path relative to the cgroup2 mount (`/` for the root).
    pub cgroup: String,
    /// The mode it is (to be) attached with; `None` when that cannot be read (an
    /// attachment half made), shown as an empty label, which Prometheus treats as none.
    pub mode: Option<Mode>,
    /// Whether the programs are attached there (for the agent: with its settings).
    pub attached: bool,
    /// The attachment's counters, named as `COUNTER_NAMES`; empty when there is no
    /// attachment to read them from (a configured cgroup that is absent or bare).
    pub counters: Vec<(&'static str, u64)>,
    /// The attachment's filters in words, when it has any.
    pub filter: Option<String>,
    pub rules: Vec<RuleEntry>,
}

/// One rule of an attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleEntry {
    /// Its name, or its number (1 for the first).
    pub label: String,
    pub filter: String,
    pub settings: String,
    /// Connections configured, then timeouts by keepalive, retransmission, connect.
    pub counts: [u64; 4],
}

/// What `keepalive cgroup status` found, as entries: runs are left out (their
/// programs go with their command), and so are attachments whose cgroup cannot be
/// found (removed, or out of this process's sight), which have no label.
pub fn from_status(found: &[Attachment]) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    for attachment in found.iter().filter(|a| !a.run) {
        let Some(cgroup) = &attachment.relative else {
            continue;
        };
        let entry = match &attachment.state {
            Ok(details) => Entry {
                cgroup: cgroup.clone(),
                mode: Some(details.policy.config.mode),
                attached: details.attached,
                counters: details.counters.to_vec(),
                filter: (!details.policy.filter.is_any())
                    .then(|| details.policy.filter.to_string()),
                rules: details
                    .policy
                    .rules
                    .iter()
                    .enumerate()
                    .map(|(i, rule)| RuleEntry {
                        label: rule.label(i),
                        filter: rule.filter.to_string(),
                        settings: rule.config.to_string(),
                        counts: details.rule_counters.get(i).copied().unwrap_or_default(),
                    })
                    .collect(),
            },
            Err(_) => Entry {
                cgroup: cgroup.clone(),
                ..Entry::default()
            },
        };
        // An interrupted attach leaves a second directory of pins for the same cgroup:
        // one series per label, the readable one.
        match entries.iter_mut().find(|e| e.cgroup == entry.cgroup) {
            Some(seen) if seen.counters.is_empty() => *seen = entry,
            Some(_) => {}
            None => entries.push(entry),
        }
    }
    entries.sort_by(|a, b| a.cgroup.cmp(&b.cgroup));
    entries
}

/// The exposition of `entries`: HELP and TYPE lines, then one sample per entry and
/// metric, families in a fixed order. Nothing at all for no entries.
pub fn render(entries: &[Entry]) -> String {
    let mut families = vec![attached_family(entries)];
    for name in COUNTER_NAMES {
        let series = Series::of(name);
        let samples: Vec<Metric> = entries
            .iter()
            .filter_map(|entry| {
                let (_, value) = entry.counters.iter().find(|(n, _)| *n == name)?;
                let mut labels = vec![label("cgroup", &entry.cgroup)];
                labels.extend(series.label.map(|(key, value)| label(key, value)));
                Some(counter(labels, *value))
            })
            .collect();
        match families.iter_mut().find(|f| f.name() == series.family) {
            Some(family) => family.mut_metric().extend(samples),
            None => families.push(family(
                &series.family,
                &series.help,
                MetricType::COUNTER,
                samples,
            )),
        }
    }
    families.extend(rule_families(entries));
    // The encoder refuses a family without samples.
    families.retain(|f| !f.get_metric().is_empty());
    let mut text = String::new();
    prometheus::TextEncoder::new()
        .encode_utf8(&families, &mut text)
        .expect("every family has a name and samples");
    text
}

/// The per-rule families, and the info series that say what filters and rules are.
fn rule_families(entries: &[Entry]) -> Vec<MetricFamily> {
    let (mut info, mut filters, mut connections, mut timeouts) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for entry in entries {
        let cgroup = label("cgroup", &entry.cgroup);
        if let Some(filter) = &entry.filter {
            filters.push(gauge(vec![cgroup.clone(), label("filter", filter)], 1.0));
        }
        for rule in &entry.rules {
            let labels = vec![cgroup.clone(), label("rule", &rule.label)];
            let mut described = labels.clone();
            described.push(label("filter", &rule.filter));
            described.push(label("settings", &rule.settings));
            info.push(gauge(described, 1.0));
            connections.push(counter(labels.clone(), rule.counts[0]));
            for (i, (_, cause)) in TIMEOUTS.iter().enumerate() {
                let mut by_cause = labels.clone();
                by_cause.push(label("cause", cause));
                timeouts.push(counter(by_cause, rule.counts[i + 1]));
            }
        }
    }
    vec![
        family(
            "keepalive_filter_info",
            "The connections an attachment applies to; the others are left to a keepalive \
             attachment above, or as the program makes them (always 1)",
            MetricType::GAUGE,
            filters,
        ),
        family(
            "keepalive_rule_info",
            "A rule of an attachment: the connections it matches and the settings they \
             get, the first matching rule winning (always 1)",
            MetricType::GAUGE,
            info,
        ),
        family(
            "keepalive_rule_connections_total",
            "Connections the rule gave its settings (also counted in \
             keepalive_connections_total)",
            MetricType::COUNTER,
            connections,
        ),
        family(
            "keepalive_rule_timeouts_total",
            "Connections of the rule ended by a timeout, by cause (also counted in \
             keepalive_timeouts_total)",
            MetricType::COUNTER,
            timeouts,
        ),
    ]
}

fn gauge(labels: Vec<LabelPair>, value: f64) -> Metric {
    let mut gauge = Gauge::default();
    gauge.set_value(value);
    let mut metric = Metric::from_gauge(gauge);
    metric.set_label(labels);
    metric
}

fn attached_family(entries: &[Entry]) -> MetricFamily {
    let samples = entries
        .iter()
        .map(|entry| {
            let mode = entry.mode.map_or("", Mode::as_str);
            gauge(
                vec![label("cgroup", &entry.cgroup), label("mode", mode)],
                if entry.attached { 1.0 } else { 0.0 },
            )
        })
        .collect();
    family(
        "keepalive_attached",
        "1 while keepalive's programs are attached to the cgroup (with the configured \
         settings, under the agent), else 0; mode is on, skip, force or off",
        MetricType::GAUGE,
        samples,
    )
}

/// Where one kernel counter goes: its family, the extra label that tells it apart
/// in a shared family, and the family's help.
#[derive(Debug, PartialEq, Eq)]
struct Series {
    family: String,
    label: Option<(&'static str, &'static str)>,
    help: String,
}

/// The kernel counters that are one family, told apart by `cause`.
const TIMEOUTS: [(&str, &str); 3] = [
    ("timeouts_keepalive", "keepalive"),
    ("timeouts_retransmission", "retransmission"),
    ("timeouts_connect", "connect"),
];

impl Series {
    fn of(name: &'static str) -> Series {
        if let Some(&(_, cause)) = TIMEOUTS.iter().find(|(n, _)| *n == name) {
            let causes: Vec<String> = TIMEOUTS
                .iter()
                .map(|(n, cause)| format!("{cause}: {}", meaning(n)))
                .collect();
            return Series {
                family: "keepalive_timeouts_total".into(),
                label: Some(("cause", cause)),
                help: format!(
                    "Connections of the cgroup ended by a timeout, by cause ({})",
                    causes.join("; ")
                ),
            };
        }
        // The programs' own settings: "own options", so that the name says what is
        // counted.
        let family = match name {
            "own_kept" => "own_options_kept",
            "own_rewritten" => "own_options_rewritten",
            "own_after_connect" => "own_options_after_connect",
            other => other,
        };
        // The meanings of the existing_* counters follow the first one's in status
        // ("connections already open that it changed"); alone, each says whose.
        let help = match name.strip_prefix("existing_") {
            Some(_) if !meaning(name).contains("--existing") => {
                format!("`keepalive cgroup attach --existing`: {}", meaning(name))
            }
            _ => capitalised(meaning(name)),
        };
        Series {
            family: format!("keepalive_{family}_total"),
            label: None,
            help,
        }
    }
}

/// The meaning bpf/keepalive.h gives a counter.
fn meaning(name: &str) -> &'static str {
    COUNTER_NAMES
        .iter()
        .position(|n| *n == name)
        .map_or("", |i| COUNTER_MEANINGS[i])
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

fn family(name: &str, help: &str, kind: MetricType, samples: Vec<Metric>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(name.to_string());
    family.set_help(help.to_string());
    family.set_field_type(kind);
    family.set_metric(samples);
    family
}

fn counter(labels: Vec<LabelPair>, value: u64) -> Metric {
    let mut counter = Counter::default();
    // Exact up to 2^53, which no counter of a connection's life reaches.
    counter.set_value(value as f64);
    let mut metric = Metric::default();
    metric.set_counter(counter);
    metric.set_label(labels);
    metric
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut pair = LabelPair::default();
    pair.set_name(name.to_string());
    pair.set_value(value.to_string());
    pair
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(cgroup: &str, attached: bool, base: u64) -> Entry {
        Entry {
            cgroup: cgroup.into(),
            mode: Some(Mode::On),
            attached,
            counters: COUNTER_NAMES
                .iter()
                .enumerate()
                .map(|(i, n)| (*n, base + i as u64))
                .collect(),
            ..Entry::default()
        }
    }

    #[test]
    fn rules_have_series_of_their_own() {
        let mut with_rules = entry("db", true, 0);
        with_rules.filter = Some("not peer 127.0.0.0/8".into());
        with_rules.rules = vec![RuleEntry {
            label: "postgres".into(),
            filter: "port 5432".into(),
            settings: "keepalive on, idle 60s".into(),
            counts: [7, 1, 2, 3],
        }];
        let text = render(&[with_rules]);
        for line in [
            "keepalive_rule_connections_total{cgroup=\"db\",rule=\"postgres\"} 7\n",
            "keepalive_rule_timeouts_total{cgroup=\"db\",rule=\"postgres\",cause=\"connect\"} 3\n",
            "keepalive_filter_info{cgroup=\"db\",filter=\"not peer 127.0.0.0/8\"} 1\n",
            "keepalive_rule_info{cgroup=\"db\",rule=\"postgres\",filter=\"port 5432\",settings=\"keepalive on, idle 60s\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert!(!render(&[entry("plain", true, 0)]).contains("rule"));
    }

    #[test]
    fn every_counter_has_its_own_series() {
        let mut seen: Vec<(String, Option<(&str, &str)>)> = Vec::new();
        for name in COUNTER_NAMES {
            let series = Series::of(name);
            assert!(series.family.starts_with("keepalive_"), "{series:?}");
            assert!(series.family.ends_with("_total"), "{series:?}");
            assert!(
                series
                    .family
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{series:?}"
            );
            assert!(!series.help.is_empty(), "{series:?}");
            let key = (series.family, series.label);
            assert!(!seen.contains(&key), "{key:?} twice");
            seen.push(key);
        }
    }

    #[test]
    fn one_series_per_entry_with_help_and_type() {
        let text = render(&[
            entry("system.slice/nginx.service", true, 10),
            entry("web", false, 0),
        ]);
        assert!(text.contains("# TYPE keepalive_connections_total counter\n"));
        assert!(text.contains("# HELP keepalive_connections_total Connections this"));
        assert!(
            text.contains(
                "keepalive_connections_total{cgroup=\"system.slice/nginx.service\"} 10\n"
            )
        );
        assert!(
            text.contains(
                "keepalive_attached{cgroup=\"system.slice/nginx.service\",mode=\"on\"} 1\n"
            )
        );
        assert!(text.contains("keepalive_attached{cgroup=\"web\",mode=\"on\"} 0\n"));
        for cause in ["keepalive", "retransmission", "connect"] {
            assert!(
                text.contains(&format!(
                    "keepalive_timeouts_total{{cgroup=\"web\",cause=\"{cause}\"}}"
                )),
                "{text}"
            );
        }
        // One HELP and one TYPE line per family, whatever the number of entries.
        assert_eq!(text.matches("# TYPE keepalive_timeouts_total").count(), 1);
        assert_eq!(
            text.matches("# TYPE ").count(),
            text.matches("# HELP ").count()
        );
    }

    #[test]
    fn a_cgroup_without_an_attachment_has_only_attached_0() {
        let text = render(&[Entry {
            cgroup: "not/yet".into(),
            mode: Some(Mode::Force),
            ..Entry::default()
        }]);
        assert_eq!(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .collect::<Vec<_>>(),
            ["keepalive_attached{cgroup=\"not/yet\",mode=\"force\"} 0"]
        );
        assert_eq!(render(&[]), "");
    }

    #[test]
    fn odd_cgroup_names_are_escaped() {
        let text = render(&[Entry {
            cgroup: "a \"quoted\"\\back\nslash".into(),
            counters: vec![("connections", 3)],
            ..Entry::default()
        }]);
        assert!(
            text.contains(
                "keepalive_connections_total{cgroup=\"a \\\"quoted\\\"\\\\back\\nslash\"} 3\n"
            ),
            "{text}"
        );
        assert!(text.contains("mode=\"\"} 0\n"), "{text}");
    }
}
