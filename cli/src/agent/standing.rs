//! How each configured cgroup stands, from what the kernel reports (`keepalive cgroup
//! status`) and whether its directory exists: what /healthz answers, what /metrics
//! shows, and what the agent does next.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use keepalive_cgroup::Attachment;
use keepalive_cgroup::rules::Policy;

use super::config::Table;
use super::owner::ALL;
use crate::metrics::{self, Entry};

/// One configured cgroup, as things are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Its directory does not exist: not yet, or no more (a restarted unit gets a new
    /// cgroup). Not an error: it is attached when it appears.
    Absent,
    /// The programs are attached, with the configured settings.
    AsConfigured,
    /// It exists and the programs are not attached: never yet, or detached by
    /// someone else.
    NotAttached,
    /// Attached with other settings (or filters, or rules) than the configured ones.
    OtherSettings(Policy),
    /// Its pins cannot be read (an interrupted attach): why.
    Unreadable(String),
}

impl Standing {
    /// What /healthz says of a cgroup that is not as configured; `None` when it is fine.
    fn problem(&self) -> Option<String> {
        match self {
            Standing::Absent | Standing::AsConfigured => None,
            Standing::NotAttached => Some("exists and keepalive is not attached to it".into()),
            Standing::OtherSettings(policy) => {
                Some(format!("attached with other settings: {policy}"))
            }
            Standing::Unreadable(why) => Some(format!("its attachment cannot be read: {why}")),
        }
    }
}

/// `table`'s cgroup, given its attachment in `status` (if any) and whether its
/// directory exists.
pub fn standing(table: &Table, found: Option<&Attachment>, exists: bool) -> Standing {
    if !exists {
        return Standing::Absent;
    }
    let Some(attachment) = found else {
        return Standing::NotAttached;
    };
    match &attachment.state {
        Err(why) => Standing::Unreadable(why.clone()),
        Ok(details) if !details.attached => Standing::NotAttached,
        Ok(details) if details.policy == table.policy.as_kernel_keeps() => Standing::AsConfigured,
        Ok(details) => Standing::OtherSettings(details.policy.clone()),
    }
}

/// The attachment `status` found for the cgroup labelled `cgroup`, runs aside.
pub fn attachment_of<'a>(found: &'a [Attachment], cgroup: &str) -> Option<&'a Attachment> {
    found
        .iter()
        .filter(|a| !a.run && a.relative.as_deref() == Some(cgroup))
        .min_by_key(|a| a.state.is_err()) // the readable one, when there are two
}

/// The directory of the cgroup labelled `cgroup` under `mount`.
pub fn path_of(mount: &Path, cgroup: &str) -> PathBuf {
    match cgroup {
        "/" => mount.to_path_buf(),
        relative => mount.join(relative),
    }
}

/// Every configured cgroup with how it stands.
pub fn survey<'a>(
    tables: &'a [Table],
    found: &[Attachment],
    exists: impl Fn(&str) -> bool,
) -> Vec<(&'a Table, Standing)> {
    tables
        .iter()
        .map(|t| {
            let standing = standing(t, attachment_of(found, &t.cgroup), exists(&t.cgroup));
            (t, standing)
        })
        .collect()
}

/// /healthz: whether every configured cgroup that exists is attached as configured,
/// and a text that says how each stands (absent ones named, not counted against),
/// with the agent's last failure (`failures`, by cgroup) where there is one.
pub fn health(
    survey: &[(&Table, Standing)],
    failures: &BTreeMap<String, String>,
) -> (bool, String) {
    let mut healthy = true;
    let mut text = String::new();
    if let Some(failure) = failures.get(ALL) {
        healthy = false;
        text.push_str(&format!("{failure}\n"));
    }
    for (table, standing) in survey {
        let line = match (standing, standing.problem()) {
            (_, Some(problem)) => {
                healthy = false;
                match failures.get(&table.cgroup) {
                    Some(failure) => format!("{}: {problem}; {failure}", table.cgroup),
                    None => format!("{}: {problem}", table.cgroup),
                }
            }
            (Standing::Absent, None) => {
                format!("{}: absent; attached when it appears", table.cgroup)
            }
            (_, None) => format!("{}: attached", table.cgroup),
        };
        text.push_str(&line);
        text.push('\n');
    }
    let verdict = if healthy { "ok" } else { "unhealthy" };
    (healthy, format!("{verdict}\n{text}"))
}

/// /metrics entries: every attachment on the machine, the configured cgroups among
/// them counted as attached only when attached as configured, and configured cgroups
/// without an attachment (absent, or bare) with attached 0.
pub fn entries(survey: &[(&Table, Standing)], found: &[Attachment]) -> Vec<Entry> {
    let mut entries = metrics::from_status(found);
    for (table, standing) in survey {
        let configured = Entry {
            cgroup: table.cgroup.clone(),
            mode: Some(table.policy.config.mode),
            attached: *standing == Standing::AsConfigured,
            ..Entry::default()
        };
        match entries.iter_mut().find(|e| e.cgroup == table.cgroup) {
            Some(entry) => {
                entry.mode = configured.mode;
                entry.attached = configured.attached;
            }
            None => entries.push(configured),
        }
    }
    entries.sort_by(|a, b| a.cgroup.cmp(&b.cgroup));
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use keepalive_cgroup::Details;
    use keepalive_cgroup::layout::COUNTER_NAMES;
    use keepalive_cgroup::rules::Filter;
    use keepalive_config::{Config, Mode};

    fn idle(idle: u16) -> Policy {
        Policy::from(Config {
            idle: Some(idle),
            ..Config::DEFAULT
        })
    }

    fn table(cgroup: &str, idle_s: u16) -> Table {
        Table {
            cgroup: cgroup.into(),
            policy: idle(idle_s),
            existing: false,
            root: false,
            line: 1,
        }
    }

    fn attachment(cgroup: &str, idle_s: u16, attached: bool) -> Attachment {
        Attachment {
            id: 1,
            cgroup: Some(PathBuf::from("/cg").join(cgroup)),
            relative: Some(cgroup.into()),
            run: false,
            pins: PathBuf::from("/sys/fs/bpf/keepalive/1"),
            state: Ok(Details {
                policy: idle(idle_s),
                rule_counters: Vec::new(),
                counters: std::array::from_fn(|i| (COUNTER_NAMES[i], 5)),
                attached,
                counting: true,
            }),
        }
    }

    #[test]
    fn each_way_a_cgroup_can_stand() {
        let t = table("a", 60);
        assert_eq!(standing(&t, None, false), Standing::Absent);
        assert_eq!(standing(&t, None, true), Standing::NotAttached);
        let as_configured = attachment("a", 60, true);
        assert_eq!(
            standing(&t, Some(&as_configured), true),
            Standing::AsConfigured
        );
        let detached = attachment("a", 60, false);
        assert_eq!(standing(&t, Some(&detached), true), Standing::NotAttached);
        let other = attachment("a", 30, true);
        assert!(matches!(
            standing(&t, Some(&other), true),
            Standing::OtherSettings(c) if c.config.idle == Some(30)
        ));
        let mut filtered = table("a", 60);
        filtered.policy.filter = Filter {
            port: "5432".parse().unwrap(),
            ..Filter::ANY
        };
        assert!(matches!(
            standing(&filtered, Some(&as_configured), true),
            Standing::OtherSettings(_)
        ));
    }

    #[test]
    fn off_compares_equal_to_what_the_kernel_keeps_of_it() {
        let mut t = table("a", 60);
        t.policy.config.mode = Mode::Off;
        let mut found = attachment("a", 60, true);
        if let Ok(details) = &mut found.state {
            details.policy = Policy::from(Config {
                mode: Mode::Off,
                ..Config::DEFAULT
            });
        }
        assert_eq!(standing(&t, Some(&found), true), Standing::AsConfigured);
    }

    #[test]
    fn healthy_with_absent_cgroups_named_unhealthy_with_a_bare_one() {
        let tables = [table("gone", 60), table("here", 60)];
        let found = [attachment("here", 60, true)];
        let none = BTreeMap::new();
        let (ok, text) = health(&survey(&tables, &found, |c| c == "here"), &none);
        assert!(ok, "{text}");
        assert!(text.contains("gone: absent"), "{text}");
        let failed = BTreeMap::from([("here".to_string(), "cannot attach: no".to_string())]);
        let (ok, text) = health(&survey(&tables, &[], |_| true), &failed);
        assert!(!ok);
        assert!(
            text.contains("here: exists and keepalive is not attached to it; cannot attach: no"),
            "{text}"
        );
    }

    #[test]
    fn metrics_count_only_attachments_as_configured() {
        let tables = [table("absent", 60), table("other", 60)];
        let found = [
            attachment("other", 30, true),
            attachment("foreign", 9, true),
        ];
        let surveyed = survey(&tables, &found, |c| c != "absent");
        let entries = entries(&surveyed, &found);
        let by = |c: &str| entries.iter().find(|e| e.cgroup == c).expect(c).clone();
        assert!(!by("absent").attached && by("absent").counters.is_empty());
        assert!(!by("other").attached && !by("other").counters.is_empty());
        assert!(
            by("foreign").attached,
            "not configured, attached: shown as it is"
        );
        assert_eq!(entries.len(), 3);
    }
}
