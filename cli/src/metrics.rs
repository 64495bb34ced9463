//! keepalive's attachments in the Prometheus text exposition format (version 0.0.4,
//! what node_exporter's textfile collector reads and `promtool check metrics` lints),
//! for `keepalive cgroup status --format prometheus` and the agent's /metrics.
//!
//! One series per cgroup, labelled with its path relative to the cgroup2 mount:
//! - `keepalive_attached{cgroup,mode}`: 1 while keepalive's programs are attached there
//!   (as configured, for the agent), 0 otherwise;
//! - a counter per kernel counter (bpf/keepalive.h): `keepalive_<name>_total`, except
//!   the three timeouts, which are one counter with a `cause` label.
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
                mode: Some(details.config.mode),
                attached: details.attached,
                counters: details.counters.to_vec(),
            },
            Err(_) => Entry {
                cgroup: cgroup.clone(),
                mode: None,
                attached: false,
                counters: Vec::new(),
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
    // The encoder refuses a family without samples.
    families.retain(|f| !f.get_metric().is_empty());
    let mut text = String::new();
    prometheus::TextEncoder::new()
        .encode_utf8(&families, &mut text)
        .expect("every family has a name and samples");
    text
}

fn attached_family(entries: &[Entry]) -> MetricFamily {
    let samples = entries
        .iter()
        .map(|entry| {
            let mode = entry.mode.map_or("", Mode::as_str);
            let mut gauge = Gauge::default();
            gauge.set_value(if entry.attached { 1.0 } else { 0.0 });
            let mut metric = Metric::from_gauge(gauge);
            metric.set_label(vec![label("cgroup", &entry.cgroup), label("mode", mode)]);
            metric
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
        }
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
            attached: false,
            counters: Vec::new(),
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
            mode: None,
            attached: false,
            counters: vec![("connections", 3)],
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
