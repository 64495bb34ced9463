//! Where an attachment applies, and with which settings: filters by peer address, port
//! and direction, and rules that give the connections they match settings of their
//! own. Parsed here from the words of the command line and the agent's configuration,
//! matched here for connections that already exist (`apply`, `attach --existing`), and
//! compiled into the maps the BPF program matches new connections with
//! (bpf/keepalive.h), from which `status` reads them back.
//!
//! ```
//! use keepalive_cgroup::rules::{Direction, Filter, Policy};
//! use keepalive_config::Config;
//!
//! // Everything but loopback, outbound only.
//! let filter = Filter {
//!     exclude_peer: "127.0.0.0/8,::1/128".parse().unwrap(),
//!     direction: Direction::Out,
//!     ..Filter::ANY
//! };
//! let policy = Policy { filter, ..Policy::from(Config::DEFAULT) };
//! assert_eq!(policy.slot_for("10.1.2.3".parse().unwrap(), 5432, Direction::Out), Some(0));
//! assert_eq!(policy.slot_for("127.0.0.1".parse().unwrap(), 5432, Direction::Out), None);
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use keepalive_config::Config;

use crate::layout::{MAX_PREFIXES, MAX_RULES, RULE_NAME_SIZE};

/// An address block: `10.0.0.0/8`, `fd00::/8`, or one address. IPv4 blocks are kept as
/// IPv4, IPv4-mapped IPv6 ones (`::ffff:10.0.0.0/104`) included, and match IPv4
/// connections and IPv4-mapped IPv6 ones alike; IPv6 blocks match IPv6 connections
/// only, so `::/0` is every IPv6 peer and `0.0.0.0/0` every IPv4 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    address: IpAddr,
    length: u8,
}

impl Cidr {
    /// The block `address/length`, which must have no bits set past `length`.
    pub fn new(address: IpAddr, length: u8) -> Option<Cidr> {
        let address = unmapped(address);
        let bits = if address.is_ipv4() { 32 } else { 128 };
        if length > bits {
            return None;
        }
        let cidr = Cidr { address, length };
        (cidr.first() == address).then_some(cidr)
    }

    pub fn address(&self) -> IpAddr {
        self.address
    }

    pub fn length(&self) -> u8 {
        self.length
    }

    /// The block of the first `length` bits of this one's (`length` at most its own).
    pub(crate) fn truncated(&self, length: u8) -> Cidr {
        let outer = Cidr {
            address: self.address,
            length,
        };
        Cidr {
            address: outer.first(),
            length,
        }
    }

    /// Whether `address` (an IPv4-mapped IPv6 address taken as IPv4) is in the block.
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.address, unmapped(address)) {
            (IpAddr::V4(block), IpAddr::V4(a)) => {
                masked(u32::from(a).into(), 32, self.length) == u32::from(block).into()
            }
            (IpAddr::V6(block), IpAddr::V6(a)) => {
                masked(u128::from(a), 128, self.length) == u128::from(block)
            }
            _ => false,
        }
    }

    /// The block's first address: its own address with the bits past `length` cleared.
    fn first(&self) -> IpAddr {
        match self.address {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(
                masked(u32::from(a).into(), 32, self.length) as u32,
            )),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(masked(a.into(), 128, self.length))),
        }
    }
}

/// `value` (of `bits` bits) with the bits past the first `length` cleared.
fn masked(value: u128, bits: u8, length: u8) -> u128 {
    if length == 0 {
        return 0;
    }
    let keep = u128::MAX << (bits - length);
    value & keep & (u128::MAX >> (128 - u32::from(bits)))
}

/// An IPv4-mapped IPv6 address as the IPv4 address it stands for.
pub fn unmapped(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        let (address, length) = match text.split_once('/') {
            Some((address, length)) => (address, Some(length)),
            None => (text, None),
        };
        let parsed: IpAddr = address
            .parse()
            .map_err(|_| format!("{address:?} is not an IPv4 or IPv6 address"))?;
        let bits = if parsed.is_ipv4() { 32 } else { 128 };
        let length = match length {
            None => bits,
            Some(length) => length
                .parse::<u8>()
                .ok()
                .filter(|&l| l <= bits)
                .ok_or_else(|| format!("{text:?} has a prefix length that is not 0 to {bits}"))?,
        };
        // ::ffff:a.b.c.d/n is the IPv4 block a.b.c.d/(n - 96).
        let (address, length) = match unmapped(parsed) {
            IpAddr::V4(v4) if parsed.is_ipv6() => {
                if length < 96 {
                    return Err(format!(
                        "{text:?} reaches past the IPv4-mapped addresses (::ffff:0:0/96): \
                         give IPv4 blocks as such"
                    ));
                }
                (IpAddr::V4(v4), length - 96)
            }
            same => (same, length),
        };
        Cidr::new(address, length).ok_or_else(|| {
            let first = Cidr { address, length }.first();
            format!("{text:?} has bits set past its prefix length (did you mean {first}/{length}?)")
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.length)
    }
}

/// A range of ports, both ends included: `5432`, or `8000-8100`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    pub low: u16,
    pub high: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        (self.low..=self.high).contains(&port)
    }
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(text: &str) -> Result<PortRange, String> {
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| {
                    format!("{text:?} is not a port from 1 to 65535 or a range LOW-HIGH")
                })
        };
        let range = match text.split_once('-') {
            Some((low, high)) => PortRange {
                low: port(low)?,
                high: port(high)?,
            },
            None => {
                let one = port(text)?;
                PortRange {
                    low: one,
                    high: one,
                }
            }
        };
        if range.low > range.high {
            return Err(format!(
                "{text:?} is backwards: the lower port comes first ({}-{})",
                range.high, range.low
            ));
        }
        Ok(range)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.low == self.high {
            write!(f, "{}", self.low)
        } else {
            write!(f, "{}-{}", self.low, self.high)
        }
    }
}

/// A comma-separated list, as `--peer` and `--port` take it: `10.0.0.0/8,fd00::/8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List<T>(pub Vec<T>);

impl<T> Default for List<T> {
    fn default() -> List<T> {
        List(Vec::new())
    }
}

impl<T: FromStr<Err = String>> FromStr for List<T> {
    type Err = String;

    fn from_str(text: &str) -> Result<List<T>, String> {
        text.split(',')
            .map(|item| match item.trim() {
                "" => Err(format!("{text:?} has an empty item")),
                item => item.parse(),
            })
            .collect::<Result<_, _>>()
            .map(List)
    }
}

impl<T: fmt::Display> fmt::Display for List<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{item}")?;
        }
        Ok(())
    }
}

/// Which connections: those the cgroup's programs make with connect(), those they
/// accept, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    Both,
    Out,
    In,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Both => "both",
            Direction::Out => "out",
            Direction::In => "in",
        }
    }

    /// Whether a connection made in `direction` (out or in) is one of these.
    pub fn takes(self, direction: Direction) -> bool {
        self == Direction::Both || self == direction
    }
}

impl FromStr for Direction {
    type Err = String;

    fn from_str(text: &str) -> Result<Direction, String> {
        match text {
            "both" => Ok(Direction::Both),
            "out" => Ok(Direction::Out),
            "in" => Ok(Direction::In),
            _ => Err(format!("{text:?} is not a direction")),
        }
    }
}

/// What `--peer`, `--exclude-peer`, `--port` and `--direction` accept, for messages.
pub mod accepted {
    pub const CIDRS: &str = "IPv4 or IPv6 CIDRs or addresses, separated by commas \
                             (10.0.0.0/8,fd00::/8,192.0.2.1)";
    pub const PORTS: &str = "ports from 1 to 65535 or ranges LOW-HIGH, separated by commas \
                             (5432,8000-8100)";
    pub const DIRECTION: &str = "out (connections made with connect()), in (accepted ones) \
                                 or both";
}

/// The connections a rule, or an attachment as a whole, applies to: those that match
/// every filter given (an empty list is no filter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The peer's address is in one of these.
    pub peer: List<Cidr>,
    /// And in none of these.
    pub exclude_peer: List<Cidr>,
    /// The remote port of an outbound connection, the local port of an inbound one.
    pub port: List<PortRange>,
    pub direction: Direction,
}

impl Filter {
    /// Every connection.
    pub const ANY: Filter = Filter {
        peer: List(Vec::new()),
        exclude_peer: List(Vec::new()),
        port: List(Vec::new()),
        direction: Direction::Both,
    };

    pub fn is_any(&self) -> bool {
        *self == Filter::ANY
    }

    pub fn matches(&self, peer: IpAddr, port: u16, direction: Direction) -> bool {
        self.direction.takes(direction)
            && (self.peer.0.is_empty() || self.peer.0.iter().any(|c| c.contains(peer)))
            && !self.exclude_peer.0.iter().any(|c| c.contains(peer))
            && (self.port.0.is_empty() || self.port.0.iter().any(|r| r.contains(port)))
    }
}

impl fmt::Display for Filter {
    /// `peer 10.0.0.0/8, not peer 10.1.0.0/16, port 5432, direction out`, or `every
    /// connection`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.peer.0.is_empty() {
            parts.push(format!("peer {}", self.peer));
        }
        if !self.exclude_peer.0.is_empty() {
            parts.push(format!("not peer {}", self.exclude_peer));
        }
        if !self.port.0.is_empty() {
            parts.push(format!("port {}", self.port));
        }
        if self.direction != Direction::Both {
            parts.push(format!("direction {}", self.direction.as_str()));
        }
        if parts.is_empty() {
            f.write_str("every connection")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// One rule: the connections it matches get `config`, which holds its own settings
/// with its table's filled in where it names none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: Option<String>,
    pub filter: Filter,
    pub config: Config,
}

impl Rule {
    /// The `rule` label of its metrics: its name, or its place (1 for the first).
    pub fn label(&self, index: usize) -> String {
        self.name.clone().unwrap_or_else(|| (index + 1).to_string())
    }
}

/// What an attachment does: the connections it applies to (`filter`; the others fall
/// through to the keepalive attachment above, if there is one), its rules, and the
/// settings of the connections that match no rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub config: Config,
    pub filter: Filter,
    pub rules: Vec<Rule>,
}

impl From<Config> for Policy {
    /// Every connection, with `config`.
    fn from(config: Config) -> Policy {
        Policy {
            config,
            filter: Filter::ANY,
            rules: Vec::new(),
        }
    }
}

impl Policy {
    /// Whether it applies to every connection alike.
    pub fn is_simple(&self) -> bool {
        self.filter.is_any() && self.rules.is_empty()
    }

    /// What a connection to or from `peer` gets: `None` outside the filter, 0 for the
    /// attachment's own settings, or the number of the first rule that matches (1 for
    /// the first), as the BPF program decides it for a new connection.
    pub fn slot_for(&self, peer: IpAddr, port: u16, direction: Direction) -> Option<usize> {
        if !self.filter.matches(peer, port, direction) {
            return None;
        }
        let rule = self
            .rules
            .iter()
            .position(|r| r.filter.matches(peer, port, direction));
        Some(rule.map_or(0, |i| i + 1))
    }

    /// The settings of a slot [`slot_for`](Self::slot_for) gave.
    pub fn config_of(&self, slot: usize) -> &Config {
        match slot {
            0 => &self.config,
            n => &self.rules[n - 1].config,
        }
    }

    /// The policy as the kernel keeps it and `status` reads it back: settings without
    /// what the programs do not keep (the log level; for `off`, anything but the mode),
    /// each list as its fewest CIDRs and ranges, in order.
    pub fn as_kernel_keeps(&self) -> Policy {
        let config = crate::settings::Settings::from_config(&self.config).to_config();
        crate::rule_maps::read_back(config, &crate::rule_maps::compile(self))
    }

    /// Whether `other` gives every slot the same meaning: the same filters, and the same
    /// rules (name and filter) in the same places; only settings may differ. Programs
    /// holding one can take the other's settings in place.
    pub fn same_slots(&self, other: &Policy) -> bool {
        self.filter == other.filter
            && self.rules.len() == other.rules.len()
            && self
                .rules
                .iter()
                .zip(&other.rules)
                .all(|(a, b)| a.name == b.name && a.filter == b.filter)
    }

    /// Where rule `index` of this policy stood in `before`, for its counters, which
    /// are kept under its metrics' `rule` label: a named rule by its name; an unnamed
    /// one (labelled by its place) only at the same place with the same filter, or its
    /// label would come to count another rule.
    pub fn earlier_place(&self, index: usize, before: &Policy) -> Option<usize> {
        let rule = &self.rules[index];
        match &rule.name {
            Some(name) => before
                .rules
                .iter()
                .position(|r| r.name.as_ref() == Some(name)),
            None => before
                .rules
                .get(index)
                .filter(|r| r.name.is_none() && r.filter == rule.filter)
                .map(|_| index),
        }
    }

    /// Refuses what the maps cannot hold, in words that say the limit.
    pub fn check(&self) -> Result<(), String> {
        if self.rules.len() > MAX_RULES {
            return Err(format!(
                "{} rules: an attachment holds at most {MAX_RULES}",
                self.rules.len()
            ));
        }
        let all_but_last = &self.rules[..self.rules.len().saturating_sub(1)];
        if let Some(i) = all_but_last.iter().position(|r| r.filter.is_any()) {
            return Err(hidden_by(i + 1));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            let Some(name) = &rule.name else { continue };
            check_name(name).map_err(|why| format!("rule {}: {why}", i + 1))?;
            if let Some(first) = self.rules[..i]
                .iter()
                .position(|r| r.name.as_ref() == Some(name))
            {
                return Err(name_taken(i + 1, name, first + 1));
            }
        }
        let maps = crate::rule_maps::compile(self);
        for (what, n) in [
            ("addresses", maps.peers.len()),
            ("port prefixes", maps.ports.len()),
        ] {
            if n > MAX_PREFIXES {
                return Err(format!(
                    "the filters hold {n} distinct {what}: an attachment holds at most \
                     {MAX_PREFIXES}"
                ));
            }
        }
        Ok(())
    }
}

/// Why rule `number` (1 for the first), which has no filter, cannot stand before
/// another.
pub fn hidden_by(number: usize) -> String {
    format!(
        "rule {number} has no filter, so it takes every connection and the rules after it \
         would never match; give it a filter, or make it the last"
    )
}

/// Why rule `number` cannot take the `name` of rule `first`.
pub fn name_taken(number: usize, name: &str, first: usize) -> String {
    format!(
        "rule {number}: the name {name:?} is rule {first}'s already; each names one rule \
         (its metrics' `rule` label)"
    )
}

/// Refuses a rule name that cannot be its metrics' `rule` label: empty, longer than
/// the kernel keeps, with control characters, or all digits (an unnamed rule's label is
/// its number).
pub fn check_name(name: &str) -> Result<(), String> {
    let limit = RULE_NAME_SIZE - 1;
    if name.is_empty()
        || name.len() > limit
        || name.chars().any(char::is_control)
        || name.trim() != name
    {
        return Err(format!(
            "the name {name:?} is not 1 to {limit} bytes without control characters, \
             nor spaces at either end"
        ));
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "the name {name:?} is all digits, as unnamed rules' labels are (their number)"
        ));
    }
    Ok(())
}

impl fmt::Display for Policy {
    /// The settings, then what limits them: `mode on, idle 60s; only port 5432; 2 rules`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.config)?;
        if !self.filter.is_any() {
            write!(f, "; only {}", self.filter)?;
        }
        match self.rules.len() {
            0 => Ok(()),
            1 => f.write_str("; 1 rule"),
            n => write!(f, "; {n} rules"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keepalive_config::Mode;

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn cidrs_parse_with_or_without_a_length() {
        assert_eq!(cidr("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("192.0.2.7").to_string(), "192.0.2.7/32");
        assert_eq!(cidr("fd00::/8").to_string(), "fd00::/8");
        assert_eq!(cidr("::1").to_string(), "::1/128");
        assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
    }

    #[test]
    fn ipv4_mapped_blocks_are_ipv4_blocks() {
        assert_eq!(cidr("::ffff:10.0.0.0/104"), cidr("10.0.0.0/8"));
        assert_eq!(cidr("::ffff:192.0.2.1"), cidr("192.0.2.1/32"));
        assert!(
            "::ffff:0:0/95"
                .parse::<Cidr>()
                .unwrap_err()
                .contains("IPv4-mapped")
        );
    }

    #[test]
    fn bad_cidrs_say_what_is_wrong() {
        assert_eq!(
            "10.0.0.1/8".parse::<Cidr>().unwrap_err(),
            "\"10.0.0.1/8\" has bits set past its prefix length (did you mean 10.0.0.0/8?)"
        );
        assert!(
            "10.0.0.0/33"
                .parse::<Cidr>()
                .unwrap_err()
                .contains("0 to 32")
        );
        assert!(
            "10.0.0.300/8"
                .parse::<Cidr>()
                .unwrap_err()
                .contains("not an IPv4 or IPv6 address")
        );
        assert!("fd00::/129".parse::<Cidr>().is_err());
        assert!("".parse::<Cidr>().is_err());
    }

    #[test]
    fn blocks_contain_their_addresses_and_mapped_ones() {
        let private = cidr("10.0.0.0/8");
        assert!(private.contains(ip("10.255.0.1")));
        assert!(private.contains(ip("::ffff:10.1.2.3")));
        assert!(!private.contains(ip("11.0.0.0")));
        assert!(!private.contains(ip("fd00::1")));
        assert!(cidr("0.0.0.0/0").contains(ip("::ffff:1.2.3.4")));
        assert!(!cidr("::/0").contains(ip("1.2.3.4")));
        assert!(!cidr("::/0").contains(ip("::ffff:1.2.3.4")));
        assert!(cidr("::/0").contains(ip("::1")));
        assert!(cidr("fd00::/8").contains(ip("fdff::9")));
    }

    #[test]
    fn ports_and_ranges() {
        assert_eq!(
            "5432".parse::<PortRange>(),
            Ok(PortRange {
                low: 5432,
                high: 5432
            })
        );
        assert_eq!(
            "8000-8100".parse::<PortRange>().unwrap().to_string(),
            "8000-8100"
        );
        assert_eq!(
            "9000-8000".parse::<PortRange>().unwrap_err(),
            "\"9000-8000\" is backwards: the lower port comes first (8000-9000)"
        );
        for bad in ["0", "65536", "x", "1-", "-5"] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn lists_refuse_empty_items() {
        let list: List<PortRange> = "80, 443,8000-8100".parse().unwrap();
        assert_eq!(list.to_string(), "80,443,8000-8100");
        assert!("80,,443".parse::<List<PortRange>>().is_err());
        assert!("".parse::<List<Cidr>>().is_err());
    }

    fn rule(name: Option<&str>, filter: Filter, idle: u16) -> Rule {
        Rule {
            name: name.map(Into::into),
            filter,
            config: Config {
                idle: Some(idle),
                ..Config::DEFAULT
            },
        }
    }

    #[test]
    fn the_first_matching_rule_wins_and_the_filter_bounds_them_all() {
        let policy = Policy {
            config: Config {
                mode: Mode::On,
                ..Config::DEFAULT
            },
            filter: Filter {
                exclude_peer: "127.0.0.0/8,::1".parse().unwrap(),
                ..Filter::ANY
            },
            rules: vec![
                rule(
                    Some("db"),
                    Filter {
                        port: "5432".parse().unwrap(),
                        ..Filter::ANY
                    },
                    60,
                ),
                rule(
                    None,
                    Filter {
                        peer: "10.0.0.0/8".parse().unwrap(),
                        ..Filter::ANY
                    },
                    120,
                ),
                rule(
                    None,
                    Filter {
                        direction: Direction::In,
                        ..Filter::ANY
                    },
                    30,
                ),
            ],
        };
        let out = Direction::Out;
        assert_eq!(policy.slot_for(ip("10.0.0.1"), 5432, out), Some(1));
        assert_eq!(policy.slot_for(ip("10.0.0.1"), 80, out), Some(2));
        assert_eq!(policy.slot_for(ip("192.0.2.1"), 80, Direction::In), Some(3));
        assert_eq!(policy.slot_for(ip("192.0.2.1"), 80, out), Some(0));
        assert_eq!(policy.slot_for(ip("127.0.0.1"), 5432, out), None);
        assert_eq!(policy.slot_for(ip("::ffff:127.0.0.1"), 5432, out), None);
        assert_eq!(policy.config_of(2).idle, Some(120));
        assert_eq!(policy.rules[1].label(1), "2");
        assert_eq!(policy.rules[0].label(0), "db");
    }

    #[test]
    fn counters_follow_a_rules_label() {
        let port = |p: &str| Filter {
            port: p.parse().unwrap(),
            ..Filter::ANY
        };
        let before = Policy {
            rules: vec![
                rule(Some("db"), port("5432"), 5),
                rule(None, port("80"), 5),
                rule(None, port("443"), 5),
            ],
            ..Policy::from(Config::DEFAULT)
        };
        let after = Policy {
            rules: vec![
                rule(None, port("443"), 5),
                rule(None, port("80"), 9),
                rule(Some("db"), port("5433"), 7),
            ],
            ..Policy::from(Config::DEFAULT)
        };
        let places: Vec<Option<usize>> = (0..3).map(|i| after.earlier_place(i, &before)).collect();
        assert_eq!(places, [None, Some(1), Some(0)]);
        assert!(!after.same_slots(&before));
        let settings_only = Policy {
            rules: vec![
                rule(Some("db"), port("5432"), 6),
                rule(None, port("80"), 6),
                rule(None, port("443"), 6),
            ],
            ..Policy::from(Config::DEFAULT)
        };
        assert!(settings_only.same_slots(&before));
    }

    #[test]
    fn filters_read_as_words() {
        let filter = Filter {
            peer: "10.0.0.0/8".parse().unwrap(),
            exclude_peer: "10.1.0.0/16".parse().unwrap(),
            port: "5432,6000-6010".parse().unwrap(),
            direction: Direction::Out,
        };
        assert_eq!(
            filter.to_string(),
            "peer 10.0.0.0/8, not peer 10.1.0.0/16, port 5432,6000-6010, direction out"
        );
        assert_eq!(Filter::ANY.to_string(), "every connection");
    }

    fn port80() -> Filter {
        Filter {
            port: "80".parse().unwrap(),
            ..Filter::ANY
        }
    }

    #[test]
    fn limits_are_checked_with_their_numbers() {
        let many = Policy {
            rules: (0..=MAX_RULES)
                .map(|_| rule(None, Filter::ANY, 5))
                .collect(),
            ..Policy::from(Config::DEFAULT)
        };
        assert!(
            many.check()
                .unwrap_err()
                .contains(&format!("at most {MAX_RULES}"))
        );
        let long_name = Policy {
            rules: vec![rule(Some(&"x".repeat(RULE_NAME_SIZE)), Filter::ANY, 5)],
            ..Policy::from(Config::DEFAULT)
        };
        assert!(long_name.check().unwrap_err().contains("rule 1"));
        let twice = Policy {
            rules: vec![
                rule(Some("db"), port80(), 5),
                rule(None, port80(), 5),
                rule(Some("db"), port80(), 6),
            ],
            ..Policy::from(Config::DEFAULT)
        };
        assert_eq!(
            twice.check().unwrap_err(),
            "rule 3: the name \"db\" is rule 1's already; each names one rule (its metrics' \
             `rule` label)"
        );
        let hiding = Policy {
            rules: vec![
                rule(None, port80(), 5),
                rule(None, Filter::ANY, 5),
                rule(None, port80(), 6),
            ],
            ..Policy::from(Config::DEFAULT)
        };
        assert!(
            hiding
                .check()
                .unwrap_err()
                .starts_with("rule 2 has no filter")
        );
        assert!(check_name("4").unwrap_err().contains("all digits"));
        assert!(check_name("a\nb").unwrap_err().contains("control"));
        assert_eq!(check_name("db-5432"), Ok(()));
        let fine = Policy {
            rules: (0..MAX_RULES).map(|_| rule(None, port80(), 5)).collect(),
            ..Policy::from(Config::DEFAULT)
        };
        assert_eq!(fine.check(), Ok(()));
    }
}
