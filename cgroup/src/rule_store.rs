//! The rule maps of one attachment, opened: from the object just loaded, from their
//! pins, or through a running program's maps (a `--cgroup` run). Written before an
//! attach or in place by a later one, and read back for `status`.

use std::path::Path;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, IterableMap, Map, MapData};
use aya::programs::ProgramInfo;
use aya::{Ebpf, Pod};

use crate::layout::RULE_SLOTS;
use crate::rule_maps::{
    PeerData, PeerSlots, PortData, RuleCounters, RuleMaps, RuleSet, RuleValue, Slots,
};
use crate::rules::Rule;
use crate::{Error, chain};

/// The maps' names, which are also their pins' names.
pub mod names {
    pub const RULE_SET: &str = "rule_set";
    pub const RULES: &str = "rules";
    pub const PEERS: &str = "peers";
    pub const PORTS: &str = "ports";
    pub const RULE_COUNTERS: &str = "rule_counters";
}

pub struct RuleStore {
    set: Array<MapData, RuleSet>,
    rules: Array<MapData, RuleValue>,
    peers: LpmTrie<MapData, PeerData, PeerSlots>,
    ports: LpmTrie<MapData, PortData, Slots>,
    counters: Array<MapData, RuleCounters>,
}

fn failed(what: &str, e: &dyn std::error::Error) -> Error {
    Error::new(format!("cannot use the rule map {what}: {}", chain(e)))
}

impl RuleStore {
    /// Takes the maps out of a freshly loaded object (before its programs are loaded,
    /// which keep their own references to them).
    pub fn take(ebpf: &mut Ebpf) -> Result<RuleStore, Error> {
        RuleStore::from_maps(|name| {
            ebpf.take_map(name)
                .ok_or_else(|| Error::new(format!("the BPF object has no map {name}")))
        })
    }

    /// The maps pinned in `dir`; `None` when they are not there (pins of a version
    /// before rules, which apply to every connection).
    pub fn open(dir: &Path) -> Result<Option<RuleStore>, Error> {
        if !dir.join(names::RULE_SET).exists() {
            return Ok(None);
        }
        RuleStore::from_maps(|name| {
            let data = MapData::from_pin(dir.join(name)).map_err(|e| failed(name, &e))?;
            Ok(wrap(name, data))
        })
        .map(Some)
    }

    /// The maps of keepalive's sock_ops `program`, by id (CAP_SYS_ADMIN); `None` for
    /// a program of a version before rules, which has none.
    pub fn of_program(program: &ProgramInfo) -> Result<Option<RuleStore>, Error> {
        let has_rules = program
            .map_ids()
            .ok()
            .flatten()
            .and_then(|ids| crate::programs::map_named(ids, names::RULE_SET))
            .is_some();
        if !has_rules {
            return Ok(None);
        }
        RuleStore::from_maps(|name| crate::programs::map_of(program, name).map(|d| wrap(name, d)))
            .map(Some)
    }

    fn from_maps(mut get: impl FnMut(&str) -> Result<Map, Error>) -> Result<RuleStore, Error> {
        let mut open = |name: &str| get(name);
        Ok(RuleStore {
            set: Array::try_from(open(names::RULE_SET)?)
                .map_err(|e| failed(names::RULE_SET, &e))?,
            rules: Array::try_from(open(names::RULES)?).map_err(|e| failed(names::RULES, &e))?,
            peers: LpmTrie::try_from(open(names::PEERS)?).map_err(|e| failed(names::PEERS, &e))?,
            ports: LpmTrie::try_from(open(names::PORTS)?).map_err(|e| failed(names::PORTS, &e))?,
            counters: Array::try_from(open(names::RULE_COUNTERS)?)
                .map_err(|e| failed(names::RULE_COUNTERS, &e))?,
        })
    }

    /// Fills the maps of a freshly loaded object, before its programs are attached:
    /// rules are never rewritten under running programs (a connection's slot number
    /// would come to mean another rule).
    pub fn fill(&mut self, maps: &RuleMaps) -> Result<(), Error> {
        for (slot, value) in maps.rules.iter().enumerate() {
            self.rules
                .set(slot as u32, value, 0)
                .map_err(|e| failed(names::RULES, &e))?;
        }
        for (length, data, value) in &maps.peers {
            self.peers
                .insert(&Key::new(*length, *data), value, 0)
                .map_err(|e| failed(names::PEERS, &e))?;
        }
        for (length, data, value) in &maps.ports {
            self.ports
                .insert(&Key::new(*length, *data), value, 0)
                .map_err(|e| failed(names::PORTS, &e))?;
        }
        self.set
            .set(0, maps.set, 0)
            .map_err(|e| failed(names::RULE_SET, &e))
    }

    /// Writes the rules' settings and names only: how an attach that changes nothing
    /// else updates running programs.
    pub fn set_rules(&mut self, rules: &[Rule]) -> Result<(), Error> {
        for (i, rule) in rules.iter().enumerate() {
            self.rules
                .set(i as u32 + 1, RuleValue::of(rule), 0)
                .map_err(|e| failed(names::RULES, &e))?;
        }
        Ok(())
    }

    /// Sets the counters of `slot`.
    pub fn set_counters(&mut self, slot: usize, counts: RuleCounters) -> Result<(), Error> {
        self.counters
            .set(slot as u32, counts, 0)
            .map_err(|e| failed(names::RULE_COUNTERS, &e))
    }

    /// What the maps hold.
    pub fn read(&self) -> Result<RuleMaps, Error> {
        let peers = entries(&self.peers, names::PEERS)?;
        let ports = entries(&self.ports, names::PORTS)?;
        Ok(RuleMaps {
            set: self
                .set
                .get(&0, 0)
                .map_err(|e| failed(names::RULE_SET, &e))?,
            rules: (0..RULE_SLOTS as u32)
                .map(|slot| self.rules.get(&slot, 0))
                .collect::<Result<_, _>>()
                .map_err(|e| failed(names::RULES, &e))?,
            peers,
            ports,
        })
    }

    /// The counters of rules 1 to `last`, in order (rule n is slot n).
    pub fn counters(&self, last: usize) -> Vec<RuleCounters> {
        (1..=last.min(RULE_SLOTS - 1) as u32)
            .map(|slot| self.counters.get(&slot, 0).unwrap_or_default())
            .collect()
    }

    /// Pins the maps in `dir`.
    pub fn pin(&self, dir: &Path) -> Result<(), Error> {
        let maps: [(&str, &MapData); 5] = [
            (names::RULE_SET, self.set.map()),
            (names::RULES, self.rules.map()),
            (names::PEERS, self.peers.map()),
            (names::PORTS, self.ports.map()),
            (names::RULE_COUNTERS, self.counters.map()),
        ];
        for (name, map) in maps {
            map.pin(dir.join(name)).map_err(|e| {
                Error::new(format!(
                    "cannot pin {name} at {}: {}",
                    dir.join(name).display(),
                    chain(&e)
                ))
            })?;
        }
        Ok(())
    }
}

/// A trie's entries as (prefix length, data, value).
fn entries<K: Pod, V: Pod>(
    trie: &LpmTrie<MapData, K, V>,
    name: &str,
) -> Result<Vec<(u32, K, V)>, Error> {
    trie.iter()
        .map(|entry| entry.map(|(key, value)| (key.prefix_len(), key.data(), value)))
        .collect::<Result<_, _>>()
        .map_err(|e| failed(name, &e))
}

/// A map by its kind, as aya wants it for the typed wrappers.
fn wrap(name: &str, data: MapData) -> Map {
    match name {
        names::PEERS | names::PORTS => Map::LpmTrie(data),
        _ => Map::Array(data),
    }
}
