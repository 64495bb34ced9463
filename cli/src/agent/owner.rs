//! What the agent does to the kernel: it owns every attachment its configuration
//! names (those it found already there included), attaches them, keeps them as
//! configured, and detaches them when they leave the configuration or when it stops.
//! One log line per attach, update and detach.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use keepalive_cgroup::rules::Policy;
use keepalive_cgroup::{Attachment, RootCgroup};

use super::config::Table;
use super::standing::{Standing, attachment_of, path_of, standing};

/// The agent's attachments, as it made them.
pub struct Owner {
    mount: PathBuf,
    /// The settings this agent gave each cgroup it attached (or adopted): a change in
    /// the configuration is then an update, and a cgroup found bare after it was
    /// attached was detached by someone else.
    applied: BTreeMap<String, Applied>,
    /// The id of each cgroup it attached: a cgroup found bare with another id is a new
    /// one by the same name (a restarted unit's), not one someone detached.
    ids: BTreeMap<String, u64>,
    /// The last failure per cgroup: logged once while it stays the same, and shown
    /// by /healthz.
    failures: Failures,
    /// Absent cgroups already said to be absent.
    absent: BTreeSet<String>,
}

/// The last failure to attach each cgroup (or [`ALL`]: to read the attachments),
/// shared with the HTTP server.
pub type Failures = Arc<Mutex<BTreeMap<String, String>>>;

/// The key in [`Failures`] of a failure that concerns every cgroup.
pub const ALL: &str = "(all)";

/// What a table asks of the kernel, as it reads back.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Applied {
    policy: Policy,
    existing: bool,
}

impl Applied {
    fn of(table: &Table) -> Applied {
        Applied {
            policy: table.policy.as_kernel_keeps(),
            existing: table.existing,
        }
    }
}

impl Owner {
    pub fn new(mount: PathBuf, failures: Failures) -> Owner {
        Owner {
            mount,
            applied: BTreeMap::new(),
            ids: BTreeMap::new(),
            failures,
            absent: BTreeSet::new(),
        }
    }

    /// Brings every table's cgroup to its configured state: attaches what exists and
    /// is not attached as configured (attaching replaces the settings of an
    /// attachment in place), and notes what is absent.
    pub fn reconcile(&mut self, tables: &[Table]) {
        let found = match keepalive_cgroup::status(None) {
            Ok(found) => found,
            Err(error) => {
                self.fail(ALL, format!("cannot read keepalive's attachments: {error}"));
                return;
            }
        };
        self.succeeded(ALL);
        for table in tables {
            self.reconcile_one(table, &found);
        }
    }

    fn reconcile_one(&mut self, table: &Table, found: &[Attachment]) {
        let path = path_of(&self.mount, &table.cgroup);
        let attachment = attachment_of(found, &table.cgroup);
        let now = standing(table, attachment, path.is_dir());
        let wanted = Applied::of(table);
        let id = keepalive_cgroup::cgroup_id(&path).ok();
        let same_cgroup = id.is_some() && self.ids.get(&table.cgroup) == id.as_ref();
        let before = self.applied.get(&table.cgroup);
        let verb = match (&now, before) {
            (Standing::Absent, _) => {
                self.note_absent(table);
                return;
            }
            (Standing::AsConfigured, Some(applied)) if *applied == wanted => return,
            // Found as configured by a new agent (a restart with --keep-attached):
            // attached again all the same, so that the programs are this version's.
            (Standing::AsConfigured, None) => Verb::Adopted,
            (Standing::NotAttached, Some(_)) if same_cgroup => Verb::Reattached,
            (Standing::NotAttached | Standing::Unreadable(_), _) => Verb::Attached,
            (Standing::AsConfigured | Standing::OtherSettings(_), _) => Verb::Updated,
        };
        self.absent.remove(&table.cgroup);
        let root = if table.root {
            RootCgroup::Allow
        } else {
            RootCgroup::Refuse
        };
        match keepalive_cgroup::attach(&table.policy, &path, root) {
            Ok(path) => {
                self.succeeded(&table.cgroup);
                self.applied.insert(table.cgroup.clone(), wanted);
                if let Some(id) = id {
                    self.ids.insert(table.cgroup.clone(), id);
                }
                verb.log(&table.cgroup, &table.policy);
                if table.existing {
                    cover_existing(&path, &table.policy);
                }
            }
            Err(error) => {
                self.applied.remove(&table.cgroup);
                self.fail(&table.cgroup, format!("cannot attach: {error}"));
            }
        }
    }

    /// Says once that an absent cgroup is waited for, and forgets what was attached
    /// to it: a cgroup made again is a new one, attached afresh.
    fn note_absent(&mut self, table: &Table) {
        let was_attached = self.applied.remove(&table.cgroup).is_some();
        if self.absent.insert(table.cgroup.clone()) {
            let what = if was_attached {
                "is gone"
            } else {
                "does not exist"
            };
            log::info!("{} {what}: attached when it appears", table.cgroup);
        }
    }

    fn fail(&mut self, cgroup: &str, message: String) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.get(cgroup) != Some(&message) {
            log::error!("{cgroup}: {message}");
            failures.insert(cgroup.to_string(), message);
        }
    }

    fn succeeded(&mut self, cgroup: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(cgroup);
    }

    /// Detaches the cgroups of `removed` (tables no longer in the configuration).
    /// Returns whether all of them could be detached.
    pub fn detach(&mut self, removed: &[&Table], why: &str) -> bool {
        let found = match keepalive_cgroup::status(None) {
            Ok(found) => found,
            Err(error) => {
                log::error!("cannot read keepalive's attachments: {error}");
                return false;
            }
        };
        let mut done = true;
        for table in removed {
            self.applied.remove(&table.cgroup);
            self.succeeded(&table.cgroup);
            self.absent.remove(&table.cgroup);
            let path = path_of(&self.mount, &table.cgroup);
            // Nothing to detach where nothing is attached, or the cgroup is gone (and
            // its attachment with it).
            if attachment_of(&found, &table.cgroup).is_none() || !path.is_dir() {
                continue;
            }
            done &= detach_one(&path, table, why);
        }
        done
    }
}

fn detach_one(path: &Path, table: &Table, why: &str) -> bool {
    let root = if table.root {
        RootCgroup::Allow
    } else {
        RootCgroup::Refuse
    };
    match keepalive_cgroup::detach(path, root) {
        Ok(_) => {
            log::info!("detached {} ({why})", table.cgroup);
            true
        }
        Err(error) => {
            log::error!("{}: cannot detach: {error}", table.cgroup);
            false
        }
    }
}

/// What an attach was, for its log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Attached,
    Updated,
    Adopted,
    Reattached,
}

impl Verb {
    fn log(self, cgroup: &str, config: &Policy) {
        match self {
            Verb::Attached => log::info!("attached {cgroup}: {config}"),
            Verb::Updated => log::info!("updated {cgroup}: {config}"),
            Verb::Adopted => log::info!("adopted {cgroup}, attached already: {config}"),
            Verb::Reattached => {
                log::warn!("attached {cgroup} again (someone else had detached it): {config}")
            }
        }
    }
}

/// Gives the connections already open in `cgroup` the settings of `config`, for a
/// table with `existing = true`, after each attach, update and adoption, as `keepalive
/// cgroup attach --existing` does: connections the attachment configured already are
/// left alone, so only those made before any attachment are changed. What it could not change is logged; the attachment stands, so it
/// does not make the agent unhealthy.
fn cover_existing(cgroup: &Path, policy: &Policy) {
    let done = crate::existing::cover(cgroup, policy);
    for failure in &done.failures {
        log::warn!(
            "{}: existing connections: {}: {}",
            cgroup.display(),
            failure.place,
            failure.reason
        );
    }
    log::info!("{}: existing connections: {done}", cgroup.display());
}
