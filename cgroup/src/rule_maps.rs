//! A [`Policy`] as the BPF program's rule maps hold it (bpf/keepalive.h): compiled
//! before an attach, and read back for `status`, so that what `status` shows is what
//! the kernel matches with.
//!
//! Every filter becomes a set of slots (slot 0 is the attachment's own filter, slot
//! n its rule n). Each CIDR, and each prefix of a port range, is one entry of a
//! longest-prefix-match trie, holding the slots of every CIDR (or prefix) that
//! contains it: the longest entry that matches a connection then holds exactly the
//! slots whose lists match it.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use keepalive_config::Config;

use crate::layout::{
    PEER_FAMILY_BITS, PEER_KEY_DATA_SIZE, PEER_SLOTS_SIZE, PORT_KEY_DATA_SIZE, RULE_COUNTER_COUNT,
    RULE_COUNTERS_SIZE, RULE_NAME_SIZE, RULE_SET_SIZE, RULE_SIZE, RULE_SLOTS,
};
use crate::rules::{Cidr, Direction, Filter, List, Policy, PortRange, Rule};
use crate::settings::Settings;

/// `struct slots`: a bit per slot.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Slots {
    bits: [u64; RULE_SLOTS / 64],
}

impl Slots {
    fn with(mut self, slot: usize) -> Slots {
        self.bits[slot / 64] |= 1 << (slot % 64);
        self
    }

    fn has(&self, slot: usize) -> bool {
        self.bits[slot / 64] & (1 << (slot % 64)) != 0
    }

    fn without(mut self, other: Slots) -> Slots {
        for (a, b) in self.bits.iter_mut().zip(other.bits) {
            *a &= !b;
        }
        self
    }

    fn union(mut self, other: Slots) -> Slots {
        for (a, b) in self.bits.iter_mut().zip(other.bits) {
            *a |= b;
        }
        self
    }
}

/// `struct rule_set`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleSet {
    used: u32,
    unused: u32,
    any_peer: Slots,
    any_port: Slots,
    outbound: Slots,
    inbound: Slots,
}

/// The data of `struct peer_key` (aya's trie key adds the prefix length before it).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct PeerData {
    family: u32,
    addr: [u8; 16],
}

/// `struct peer_slots`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerSlots {
    peer: Slots,
    excluded: Slots,
}

/// The data of `struct port_key`: the port in network byte order, then two unused bytes.
pub type PortData = [u8; 4];

/// `struct rule`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleValue {
    pub settings: Settings,
    name: [u8; RULE_NAME_SIZE],
}

/// `struct rule_counters`, in the order of `enum rule_counter`: connections, then
/// timeouts by keepalive, retransmission and connect.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleCounters {
    pub n: [u64; RULE_COUNTER_COUNT],
}

const _: () = assert!(size_of::<RuleSet>() == RULE_SET_SIZE);
const _: () = assert!(size_of::<PeerData>() == PEER_KEY_DATA_SIZE);
const _: () = assert!(size_of::<PeerSlots>() == PEER_SLOTS_SIZE);
const _: () = assert!(size_of::<PortData>() == PORT_KEY_DATA_SIZE);
const _: () = assert!(size_of::<RuleValue>() == RULE_SIZE);
const _: () = assert!(size_of::<RuleCounters>() == RULE_COUNTERS_SIZE);

// SAFETY: each is repr(C), made of integers and arrays of them with no padding (their
// sizes are asserted above against the C structs'), so any bit pattern is a valid value.
unsafe impl aya::Pod for Slots {}
// SAFETY: as above.
unsafe impl aya::Pod for RuleSet {}
// SAFETY: as above.
unsafe impl aya::Pod for PeerData {}
// SAFETY: as above.
unsafe impl aya::Pod for PeerSlots {}
// SAFETY: as above.
unsafe impl aya::Pod for RuleValue {}
// SAFETY: as above.
unsafe impl aya::Pod for RuleCounters {}

/// The contents of the rule maps: `rules` by slot (slot 0 unused), the tries' entries
/// as (prefix length, data, value).
#[derive(Debug, Clone, PartialEq)]
pub struct RuleMaps {
    pub set: RuleSet,
    pub rules: Vec<RuleValue>,
    pub peers: Vec<(u32, PeerData, PeerSlots)>,
    pub ports: Vec<(u32, PortData, Slots)>,
}

/// The filters of a policy by slot: its own, then its rules'.
fn filters(policy: &Policy) -> impl Iterator<Item = (usize, &Filter)> {
    std::iter::once(&policy.filter)
        .chain(policy.rules.iter().map(|r| &r.filter))
        .enumerate()
}

/// What the maps hold for `policy`, which [`Policy::check`] found within their limits.
pub fn compile(policy: &Policy) -> RuleMaps {
    let mut set = RuleSet {
        used: u32::from(!policy.is_simple()),
        ..RuleSet::default()
    };
    let mut peers: BTreeMap<Cidr, PeerSlots> = BTreeMap::new();
    let mut ports: BTreeMap<(u8, u16), Slots> = BTreeMap::new();
    for (slot, filter) in filters(policy) {
        if filter.peer.0.is_empty() {
            set.any_peer = set.any_peer.with(slot);
        }
        if filter.port.0.is_empty() {
            set.any_port = set.any_port.with(slot);
        }
        if filter.direction.takes(Direction::Out) {
            set.outbound = set.outbound.with(slot);
        }
        if filter.direction.takes(Direction::In) {
            set.inbound = set.inbound.with(slot);
        }
        for cidr in &filter.peer.0 {
            let entry = peers.entry(*cidr).or_default();
            entry.peer = entry.peer.with(slot);
        }
        for cidr in &filter.exclude_peer.0 {
            let entry = peers.entry(*cidr).or_default();
            entry.excluded = entry.excluded.with(slot);
        }
        for range in &filter.port.0 {
            for prefix in port_prefixes(*range) {
                let entry = ports.entry(prefix).or_default();
                *entry = entry.with(slot);
            }
        }
    }
    let rules = std::iter::once(RuleValue::unused())
        .chain(policy.rules.iter().map(RuleValue::of))
        .collect();
    RuleMaps {
        set,
        rules,
        peers: peers
            .keys()
            .map(|cidr| {
                // The entries containing it are its own truncations that are entries.
                let inherited = (0..=cidr.length())
                    .filter_map(|length| peers.get(&cidr.truncated(length)))
                    .fold(PeerSlots::default(), |sum, own| PeerSlots {
                        peer: sum.peer.union(own.peer),
                        excluded: sum.excluded.union(own.excluded),
                    });
                let (length, data) = peer_key(*cidr);
                (length, data, inherited)
            })
            .collect(),
        ports: ports
            .iter()
            .map(|(&(length, first), _)| {
                let inherited = (0..=length)
                    .filter_map(|outer| ports.get(&(outer, first & mask(outer))))
                    .fold(Slots::default(), |sum, own| sum.union(*own));
                (u32::from(length), port_data(first), inherited)
            })
            .collect(),
    }
}

/// The trie key of a CIDR.
fn peer_key(cidr: Cidr) -> (u32, PeerData) {
    let mut addr = [0; 16];
    let family = match cidr.address() {
        IpAddr::V4(v4) => {
            addr[..4].copy_from_slice(&v4.octets());
            4
        }
        IpAddr::V6(v6) => {
            addr = v6.octets();
            6
        }
    };
    (
        PEER_FAMILY_BITS + u32::from(cidr.length()),
        PeerData { family, addr },
    )
}

fn port_data(first: u16) -> PortData {
    let [high, low] = first.to_be_bytes();
    [high, low, 0, 0]
}

/// The first `length` bits of a port.
fn mask(length: u8) -> u16 {
    if length == 0 {
        0
    } else {
        u16::MAX << (16 - length)
    }
}

/// A range of ports as the fewest prefixes (length, first port) that cover it.
fn port_prefixes(range: PortRange) -> Vec<(u8, u16)> {
    let mut prefixes = Vec::new();
    let mut start = u32::from(range.low);
    let end = u32::from(range.high);
    while start <= end {
        // The largest aligned block that starts here and ends within the range.
        let mut size = if start == 0 {
            1 << 16
        } else {
            1 << start.trailing_zeros()
        };
        while start + size - 1 > end {
            size /= 2;
        }
        prefixes.push((16 - size.trailing_zeros() as u8, start as u16));
        start += size;
    }
    prefixes
}

impl RuleValue {
    fn unused() -> RuleValue {
        RuleValue {
            settings: Settings::from_config(&Config::DEFAULT),
            name: [0; RULE_NAME_SIZE],
        }
    }

    pub(crate) fn of(rule: &Rule) -> RuleValue {
        let mut name = [0; RULE_NAME_SIZE];
        let bytes = rule.name.as_deref().unwrap_or_default().as_bytes();
        let n = bytes.len().min(RULE_NAME_SIZE - 1);
        name[..n].copy_from_slice(&bytes[..n]);
        RuleValue {
            settings: Settings::from_config(&rule.config),
            name,
        }
    }

    fn name(&self) -> Option<String> {
        let end = self
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(RULE_NAME_SIZE);
        (end > 0).then(|| String::from_utf8_lossy(&self.name[..end]).into_owned())
    }
}

/// The policy the maps hold, with the attachment's own settings `config`: each list
/// as its fewest CIDRs and ranges, in order (the same connections match).
pub fn read_back(config: Config, maps: &RuleMaps) -> Policy {
    if maps.set.used == 0 {
        return Policy::from(config);
    }
    let slots = (0..RULE_SLOTS)
        .rev()
        .find(|&s| maps.set.outbound.has(s) || maps.set.inbound.has(s))
        .unwrap_or(0);
    let outermost = Outermost::of(maps);
    let filter = |slot| filter_of(maps, &outermost, slot);
    Policy {
        config,
        filter: filter(0),
        rules: (1..=slots)
            .map(|slot| {
                let value = maps
                    .rules
                    .get(slot)
                    .copied()
                    .unwrap_or_else(RuleValue::unused);
                Rule {
                    name: value.name(),
                    filter: filter(slot),
                    config: value.settings.to_config(),
                }
            })
            .collect(),
    }
}

/// Each trie entry with the slots it holds that the nearest entry containing it does
/// not: the slots whose lists have it outermost. An entry holds the slots of every
/// entry containing it, so the nearest one's are all that are inherited.
struct Outermost {
    peer: Vec<(Cidr, Slots)>,
    excluded: Vec<(Cidr, Slots)>,
    /// (prefix length, first port)
    ports: Vec<((u8, u16), Slots)>,
}

impl Outermost {
    fn of(maps: &RuleMaps) -> Outermost {
        let cidrs: HashMap<Cidr, PeerSlots> = maps
            .peers
            .iter()
            .filter_map(|(length, data, value)| Some((cidr_of(*length, data)?, *value)))
            .collect();
        let (mut peer, mut excluded) = (Vec::new(), Vec::new());
        for (cidr, value) in &cidrs {
            let parent = (0..cidr.length())
                .rev()
                .find_map(|length| cidrs.get(&cidr.truncated(length)))
                .copied()
                .unwrap_or_default();
            peer.push((*cidr, value.peer.without(parent.peer)));
            excluded.push((*cidr, value.excluded.without(parent.excluded)));
        }
        let prefixes: HashMap<(u8, u16), Slots> = maps
            .ports
            .iter()
            .map(|(length, data, value)| {
                (
                    (*length as u8, u16::from_be_bytes([data[0], data[1]])),
                    *value,
                )
            })
            .collect();
        let ports = prefixes
            .iter()
            .map(|(&(length, first), value)| {
                let parent = (0..length)
                    .rev()
                    .find_map(|l| prefixes.get(&(l, first & mask(l))))
                    .copied()
                    .unwrap_or_default();
                ((length, first), value.without(parent))
            })
            .collect();
        Outermost {
            peer,
            excluded,
            ports,
        }
    }
}

fn filter_of(maps: &RuleMaps, outermost: &Outermost, slot: usize) -> Filter {
    let cidrs = |entries: &[(Cidr, Slots)]| {
        let mut mine: Vec<Cidr> = entries
            .iter()
            .filter(|(_, own)| own.has(slot))
            .map(|(cidr, _)| *cidr)
            .collect();
        mine.sort();
        List(mine)
    };
    let mut prefixes: Vec<(u8, u16)> = outermost
        .ports
        .iter()
        .filter(|(_, own)| own.has(slot))
        .map(|(prefix, _)| *prefix)
        .collect();
    prefixes.sort_by_key(|&(_, first)| first);
    let mut ranges: Vec<PortRange> = Vec::new();
    for (length, first) in prefixes {
        let last = (u32::from(first) + (1 << (16 - length)) - 1) as u16;
        match ranges.last_mut() {
            Some(r) if u32::from(r.high) + 1 == u32::from(first) => r.high = last,
            _ => ranges.push(PortRange {
                low: first,
                high: last,
            }),
        }
    }
    let (out, inbound) = (maps.set.outbound.has(slot), maps.set.inbound.has(slot));
    Filter {
        peer: if maps.set.any_peer.has(slot) {
            List::default()
        } else {
            cidrs(&outermost.peer)
        },
        exclude_peer: cidrs(&outermost.excluded),
        port: if maps.set.any_port.has(slot) {
            List::default()
        } else {
            List(ranges)
        },
        direction: match (out, inbound) {
            (true, false) => Direction::Out,
            (false, true) => Direction::In,
            _ => Direction::Both,
        },
    }
}

fn cidr_of(length: u32, data: &PeerData) -> Option<Cidr> {
    let length = u8::try_from(length.checked_sub(PEER_FAMILY_BITS)?).ok()?;
    let address = match data.family {
        4 => IpAddr::from([data.addr[0], data.addr[1], data.addr[2], data.addr[3]]),
        6 => IpAddr::from(data.addr),
        _ => return None,
    };
    Cidr::new(address, length)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keepalive_config::Mode;

    /// The BPF program's matching (slot_of), done over the compiled maps: the longest
    /// entry of each trie that contains the connection, and the lowest surviving bit.
    fn simulate(maps: &RuleMaps, peer: IpAddr, port: u16, direction: Direction) -> Option<usize> {
        if maps.set.used == 0 {
            return Some(0);
        }
        // The family the program looks up: IPv4-mapped addresses as IPv4.
        let family = if crate::rules::unmapped(peer).is_ipv4() {
            4
        } else {
            6
        };
        let by_peer = maps
            .peers
            .iter()
            .filter(|(length, data, _)| {
                data.family == family && cidr_of(*length, data).is_some_and(|c| c.contains(peer))
            })
            .max_by_key(|(length, _, _)| *length)
            .map(|e| e.2)
            .unwrap_or_default();
        let by_port = maps
            .ports
            .iter()
            .filter(|(length, data, _)| {
                port & mask(*length as u8) == u16::from_be_bytes([data[0], data[1]])
            })
            .max_by_key(|(length, _, _)| *length)
            .map(|e| e.2)
            .unwrap_or_default();
        let set = &maps.set;
        let way = if direction == Direction::In {
            set.inbound
        } else {
            set.outbound
        };
        let candidate = |s: usize| {
            way.has(s)
                && (set.any_peer.has(s) || by_peer.peer.has(s))
                && !by_peer.excluded.has(s)
                && (set.any_port.has(s) || by_port.has(s))
        };
        if !candidate(0) {
            return None;
        }
        Some((1..RULE_SLOTS).find(|&s| candidate(s)).unwrap_or(0))
    }

    fn filter(peer: &str, exclude: &str, port: &str, direction: Direction) -> Filter {
        fn list<T: std::str::FromStr<Err = String>>(text: &str) -> List<T> {
            if text.is_empty() {
                List::default()
            } else {
                text.parse().unwrap()
            }
        }
        Filter {
            peer: list(peer),
            exclude_peer: list(exclude),
            port: list(port),
            direction,
        }
    }

    fn rule(name: Option<&str>, filter: Filter, idle: u16) -> Rule {
        Rule {
            name: name.map(Into::into),
            filter,
            config: Config {
                mode: Mode::On,
                idle: Some(idle),
                ..Config::DEFAULT
            },
        }
    }

    fn sample() -> Policy {
        Policy {
            config: Config {
                mode: Mode::On,
                idle: Some(600),
                ..Config::DEFAULT
            },
            filter: filter("", "127.0.0.0/8,::1/128", "", Direction::Both),
            rules: vec![
                rule(
                    Some("db"),
                    filter("10.0.0.0/8", "10.9.0.0/16", "5432", Direction::Out),
                    60,
                ),
                rule(
                    None,
                    filter("10.1.0.0/16,fd00::/8", "", "8000-8100", Direction::Both),
                    120,
                ),
                rule(Some("inbound"), filter("", "", "", Direction::In), 30),
                rule(None, filter("0.0.0.0/0", "", "1-1023", Direction::Out), 45),
            ],
        }
    }

    #[test]
    fn ranges_become_the_fewest_prefixes() {
        assert_eq!(
            port_prefixes(PortRange {
                low: 5432,
                high: 5432
            }),
            [(16, 5432)]
        );
        assert_eq!(
            port_prefixes(PortRange {
                low: 8000,
                high: 8003
            }),
            [(14, 8000)]
        );
        assert_eq!(
            port_prefixes(PortRange {
                low: 1,
                high: 65535
            })
            .len(),
            16,
            "1, 2-3, 4-7, ... 32768-65535"
        );
        assert_eq!(
            port_prefixes(PortRange {
                low: 0,
                high: 65535
            }),
            [(0, 0)]
        );
    }

    #[test]
    fn the_maps_match_as_the_policy_does() {
        let policy = sample();
        let maps = compile(&policy);
        let peers = [
            "10.0.0.1",
            "10.1.2.3",
            "10.9.0.1",
            "127.0.0.1",
            "::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "fd00::5",
            "fe80::1",
            "192.0.2.1",
        ];
        let ports = [1, 22, 1023, 1024, 5432, 7999, 8000, 8050, 8100, 8101, 65535];
        for peer in peers {
            let peer: IpAddr = peer.parse().unwrap();
            for port in ports {
                for direction in [Direction::Out, Direction::In] {
                    assert_eq!(
                        simulate(&maps, peer, port, direction),
                        policy.slot_for(peer, port, direction),
                        "{peer} {port} {direction:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_simple_policy_looks_nothing_up() {
        let maps = compile(&Policy::from(Config::DEFAULT));
        assert_eq!(maps.set.used, 0);
        assert!(maps.peers.is_empty() && maps.ports.is_empty());
    }

    #[test]
    fn the_maps_read_back_as_the_policy() {
        let policy = sample();
        assert_eq!(read_back(policy.config, &compile(&policy)), policy);
    }

    #[test]
    fn read_back_gives_the_fewest_cidrs_and_ranges() {
        let redundant = Policy {
            filter: filter(
                "10.0.0.0/8,10.1.0.0/16",
                "",
                "80,81,82-90,100",
                Direction::Both,
            ),
            ..Policy::from(Config::DEFAULT)
        };
        let back = read_back(Config::DEFAULT, &compile(&redundant));
        assert_eq!(back.filter.peer.to_string(), "10.0.0.0/8");
        assert_eq!(back.filter.port.to_string(), "80-90,100");
    }
}
