//! The BPF object built from bpf/keepalive.bpf.c: loading it with its settings,
//! attaching and detaching its two cgroup programs, pinning them, and reading them back
//! from their pins. Its third program, which counts dead connections, is attached to a
//! tracepoint as soon as it is loaded (it counts nothing until the cgroup programs
//! claim connections) and lives as long as the object: the process, or its pins.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use aya::maps::{Array, MapData, SkStorage};
use aya::programs::links::FdLink;
use aya::programs::{BtfTracePoint, CgroupSockopt, ProgramError, ProgramInfo, SockOps};
use aya::{Btf, Ebpf, EbpfLoader};

use crate::hooks;
use crate::rule_maps::{self, RuleCounters};
use crate::rule_store::RuleStore;
use crate::rules::Policy;
use crate::settings::Settings;
use crate::{Error, chain};

/// The object clang built, aligned as aya needs it.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/keepalive.bpf.o"));

/// The programs' names, as the kernel lists them.
pub const SOCK_OPS: &str = "on_sockops";
const SETSOCKOPT: &str = "on_setsockopt";
const ON_ERROR: &str = "on_error";
/// The tracepoint on_error is attached to: a socket reporting an error.
const ERROR_TRACEPOINT: &str = "inet_sk_error_report";

pub use crate::layout::COUNTER_NAMES;

/// The cgroup programs' ids, and the tags (a hash of their instructions, which tells
/// one build of keepalive.bpf.c from another) of all three; the counting program's is
/// 0 in pins made before it existed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub ids: [u32; 2],
    pub tags: [u64; 3],
}

fn identity(
    infos: [Result<ProgramInfo, ProgramError>; 2],
    counting_tag: Result<u64, ProgramError>,
) -> Result<Identity, Error> {
    let unreadable =
        |e: ProgramError| Error::new(format!("cannot read the program's identity: {}", chain(&e)));
    let [a, b] = infos;
    let (a, b) = (a.map_err(unreadable)?, b.map_err(unreadable)?);
    Ok(Identity {
        ids: [a.id(), b.id()],
        tags: [a.tag(), b.tag(), counting_tag.map_err(unreadable)?],
    })
}

/// The names of the pins in a pin directory.
pub mod pin {
    pub const SOCK_OPS: &str = "sock_ops";
    pub const SETSOCKOPT: &str = "setsockopt";
    pub const SETTINGS: &str = "settings";
    pub const COUNTERS: &str = "counters";
    /// The per-socket records (an sk_storage map), for `attach --existing`.
    pub const SOCK_STATES: &str = "sock_states";
    /// The counting program, and its attachment to the tracepoint.
    pub const ON_ERROR: &str = "on_error";
    pub const ON_ERROR_LINK: &str = "on_error_link";
}

/// The three programs, loaded and verified, with their maps; the counting program is
/// attached to its tracepoint until this is dropped, or for good once pinned.
pub struct Loaded {
    ebpf: Ebpf,
    counting: Option<FdLink>,
    rules: RuleStore,
}

impl Loaded {
    /// Loads the programs into the kernel and gives them `policy`, which
    /// [`Policy::check`] found within the maps' limits.
    pub fn load(policy: &Policy) -> Result<Loaded, Error> {
        let mut ebpf = EbpfLoader::new()
            .load(OBJECT)
            .map_err(|e| Error::new(format!("cannot load the BPF object: {}", chain(&e))))?;
        let map = ebpf
            .map_mut(pin::SETTINGS)
            .expect("the object defines settings");
        Array::<_, Settings>::try_from(map)
            .and_then(|mut array| array.set(0, Settings::from_config(&policy.config), 0))
            .map_err(|e| Error::new(format!("cannot write the settings map: {}", chain(&e))))?;
        let mut rules = RuleStore::take(&mut ebpf)?;
        rules.fill(&rule_maps::compile(policy))?;
        let sock_ops: &mut SockOps = program(&mut ebpf, SOCK_OPS)?;
        sock_ops.load().map_err(refused)?;
        let setsockopt: &mut CgroupSockopt = program(&mut ebpf, SETSOCKOPT)?;
        setsockopt.load().map_err(refused)?;
        let counting = attach_counting(&mut ebpf)?;
        Ok(Loaded {
            ebpf,
            counting: Some(counting),
            rules,
        })
    }

    /// Attaches both programs to `cgroup`; a failure leaves neither attached.
    pub fn attach(&self, cgroup: BorrowedFd<'_>) -> io::Result<()> {
        hooks::attach_both(cgroup, self.fds())
    }

    /// Detaches both programs from `cgroup`.
    pub fn detach(&self, cgroup: BorrowedFd<'_>) -> io::Result<()> {
        hooks::detach_both(cgroup, self.fds())
    }

    pub fn identity(&self) -> Result<Identity, Error> {
        let info = |name| {
            let program = self.ebpf.program(name).expect("the object defines it");
            program.info()
        };
        identity(
            [SOCK_OPS, SETSOCKOPT].map(info),
            info(ON_ERROR).map(|i| i.tag()),
        )
    }

    /// Pins the programs and the maps `status` reads into `dir`, which must exist on
    /// a bpffs.
    pub fn pin(&mut self, dir: &Path) -> Result<(), Error> {
        let pinned = |what: &str, e: &dyn std::error::Error| {
            Error::new(format!(
                "cannot pin {what} at {}: {}",
                dir.join(what).display(),
                chain(e)
            ))
        };
        for (name, file) in [
            (SOCK_OPS, pin::SOCK_OPS),
            (SETSOCKOPT, pin::SETSOCKOPT),
            (ON_ERROR, pin::ON_ERROR),
        ] {
            let program = self.ebpf.program_mut(name).expect("the object defines it");
            program.pin(dir.join(file)).map_err(|e| pinned(file, &e))?;
        }
        if let Some(link) = self.counting.take() {
            link.pin(dir.join(pin::ON_ERROR_LINK))
                .map_err(|e| pinned(pin::ON_ERROR_LINK, &e))?;
        }
        for name in [pin::SETTINGS, pin::COUNTERS, pin::SOCK_STATES] {
            let map = self.ebpf.map(name).expect("the object defines it");
            map.pin(dir.join(name)).map_err(|e| pinned(name, &e))?;
        }
        self.rules.pin(dir)
    }

    /// Starts the counters where `old`'s (an attachment of the same programs that
    /// these replace, holding `before` and its rules' `counts`) stand: all of the
    /// attachment's, and a rule's for the same rule wherever it now stands in `now`
    /// (the policy as the kernel keeps it), so that no counter goes back, nor moves
    /// from one rule to another.
    pub fn carry_counters(
        &mut self,
        old: &Pinned,
        before: &Policy,
        counts: &[RuleCounters],
        now: &Policy,
    ) -> Result<(), Error> {
        let map = self
            .ebpf
            .map_mut(pin::COUNTERS)
            .expect("the object defines counters");
        let mut counters: Array<_, u64> = Array::try_from(map)
            .map_err(|e| Error::new(format!("cannot open the counters: {}", chain(&e))))?;
        for (i, n) in old.counters().into_iter().enumerate() {
            counters
                .set(i as u32, n, 0)
                .map_err(|e| Error::new(format!("cannot write the counters: {}", chain(&e))))?;
        }
        for i in 0..now.rules.len() {
            if let Some(j) = now.earlier_place(i, before) {
                self.rules.set_counters(i + 1, counts[j])?;
            }
        }
        Ok(())
    }

    fn fds(&self) -> [BorrowedFd<'_>; 2] {
        [SOCK_OPS, SETSOCKOPT].map(|name| {
            let program = self.ebpf.program(name).expect("the object defines it");
            program.fd().expect("loaded in Loaded::load").as_fd()
        })
    }
}

/// Loads the counting program and attaches it to its tracepoint. It reads the kernel's
/// socket structures through BTF, which every kernel cgroup mode supports provides.
fn attach_counting(ebpf: &mut Ebpf) -> Result<FdLink, Error> {
    let btf = Btf::from_sys_fs().map_err(|e| {
        Error::new(format!(
            "cannot read the kernel's BTF (/sys/kernel/btf/vmlinux), which cgroup mode \
             needs: {}",
            chain(&e)
        ))
    })?;
    let counting: &mut BtfTracePoint = program(ebpf, ON_ERROR)?;
    counting.load(ERROR_TRACEPOINT, &btf).map_err(refused)?;
    let cannot_attach = |e: &dyn std::error::Error| {
        Error::new(format!(
            "cannot attach the counting program to the tracepoint {ERROR_TRACEPOINT}: {}",
            chain(e)
        ))
    };
    let id = counting.attach().map_err(|e| cannot_attach(&e))?;
    let link = counting.take_link(id).map_err(|e| cannot_attach(&e))?;
    Ok(FdLink::from(link))
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, Error>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let program = ebpf
        .program_mut(name)
        .expect("the object defines both programs");
    program
        .try_into()
        .map_err(|e| Error::new(format!("{name}: {e}")))
}

/// A program the kernel would not load, with the verifier's reason: the line that
/// says what it refused, not the statistics it prints after.
fn refused(error: ProgramError) -> Error {
    let detail = match &error {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            match verifier_reason(&log) {
                Some(reason) => format!("{io_error}; the verifier says: {reason}"),
                None => io_error.to_string(),
            }
        }
        other => chain(other),
    };
    Error::new(format!(
        "the kernel refused the BPF program: {detail} (cgroup mode needs Linux {} or later, \
         and CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON)",
        crate::preflight::MIN_KERNEL_TEXT
    ))
}

/// The verifier's reason for refusing a program: the last line of its log that is
/// not one of the statistics lines it ends with.
fn verifier_reason(log: &str) -> Option<&str> {
    const STATISTICS: [&str; 4] = [
        "processed ",
        "verification time",
        "stack depth",
        "max_states_per_insn",
    ];
    log.lines()
        .map(str::trim)
        .rev()
        .find(|line| !line.is_empty() && !STATISTICS.iter().any(|s| line.starts_with(s)))
}

/// Programs and maps pinned by `keepalive cgroup attach` or `pin`, opened again.
pub struct Pinned {
    sock_ops: SockOps,
    setsockopt: CgroupSockopt,
    /// The counting program's tag, 0 in pins made before it existed.
    counting_tag: u64,
    /// Whether its link to the tracepoint is pinned: removed, nothing is counted.
    counting: bool,
    settings: Array<MapData, Settings>,
    counters: Array<MapData, u64>,
    /// `None` in pins made before rules existed.
    rules: Option<RuleStore>,
}

impl Pinned {
    pub fn open(dir: &Path) -> Result<Pinned, Error> {
        let fail = |what: &str, e: &dyn std::error::Error| {
            Error::new(format!(
                "cannot open {}: {}",
                dir.join(what).display(),
                chain(e)
            ))
        };
        let sock_ops =
            SockOps::from_pin(dir.join(pin::SOCK_OPS)).map_err(|e| fail(pin::SOCK_OPS, &e))?;
        let setsockopt = CgroupSockopt::from_pin(
            dir.join(pin::SETSOCKOPT),
            aya::programs::CgroupSockoptAttachType::Set,
        )
        .map_err(|e| fail(pin::SETSOCKOPT, &e))?;
        let map = |name: &str| {
            MapData::from_pin(dir.join(name))
                .map(aya::maps::Map::Array)
                .map_err(|e| fail(name, &e))
        };
        let settings = Array::try_from(map(pin::SETTINGS)?).map_err(|e| fail(pin::SETTINGS, &e))?;
        let counters = Array::try_from(map(pin::COUNTERS)?).map_err(|e| fail(pin::COUNTERS, &e))?;
        let counting_tag = ProgramInfo::from_pin(dir.join(pin::ON_ERROR)).map_or(0, |i| i.tag());
        let counting = counting_tag != 0 && dir.join(pin::ON_ERROR_LINK).exists();
        let rules = RuleStore::open(dir)?;
        Ok(Pinned {
            sock_ops,
            setsockopt,
            counting_tag,
            counting,
            settings,
            counters,
            rules,
        })
    }

    /// Whether dead connections are counted: the counting program is pinned with its
    /// link (pins of an earlier version have neither; a removed link counts nothing).
    pub fn counting(&self) -> bool {
        self.counting
    }

    pub fn settings(&self) -> Result<Settings, Error> {
        self.settings
            .get(&0, 0)
            .map_err(|e| Error::new(format!("cannot read the settings: {}", chain(&e))))
    }

    /// The policy the programs apply, and the counters of its rules (by rule, the
    /// first rule's first).
    pub fn policy(&self) -> Result<(Policy, Vec<RuleCounters>), Error> {
        policy_of(self.settings()?, self.rules.as_ref())
    }

    pub fn identity(&self) -> Result<Identity, Error> {
        identity(
            [self.sock_ops.info(), self.setsockopt.info()],
            Ok(self.counting_tag),
        )
    }

    /// Replaces the settings, the attachment's and its rules', in place: connections
    /// made from now on get the new ones, and those open already follow them (force).
    /// Only for a policy whose slots mean what the held ones mean
    /// ([`Policy::same_slots`]): filters are never changed in place (see
    /// `persistent::attach`).
    pub fn set_settings(&mut self, policy: &Policy) -> Result<(), Error> {
        if let Some(rules) = self.rules.as_mut() {
            rules.set_rules(&policy.rules)?;
        }
        self.settings
            .set(0, Settings::from_config(&policy.config), 0)
            .map_err(|e| Error::new(format!("cannot write the settings: {}", chain(&e))))
    }

    pub fn counters(&self) -> [u64; COUNTER_NAMES.len()] {
        std::array::from_fn(|i| self.counters.get(&(i as u32), 0).unwrap_or(0))
    }

    /// Adds `n` to counter `index` (a COUNTER_* index of the layout). Only the
    /// counters user space keeps are written, under the pin directory's lock.
    pub fn add_to_counter(&mut self, index: usize, n: u64) -> Result<(), Error> {
        let key = index as u32;
        let now = self.counters.get(&key, 0).unwrap_or(0);
        self.counters
            .set(key, now + n, 0)
            .map_err(|e| Error::new(format!("cannot write the counters: {}", chain(&e))))
    }

    pub fn attach(&self, cgroup: BorrowedFd<'_>) -> io::Result<()> {
        hooks::attach_both(cgroup, self.fds()?)
    }

    /// Puts back an attachment of an earlier version, with its own flags.
    pub fn restore(&self, cgroup: BorrowedFd<'_>, flags: u32) -> io::Result<()> {
        hooks::attach_both_with(cgroup, self.fds()?, flags)
    }

    pub fn detach(&self, cgroup: BorrowedFd<'_>) -> io::Result<()> {
        hooks::detach_both(cgroup, self.fds()?)
    }

    fn fds(&self) -> io::Result<[BorrowedFd<'_>; 2]> {
        let fd = |r: Result<_, ProgramError>| {
            r.map(|fd: &aya::programs::ProgramFd| fd.as_fd())
                .map_err(io::Error::other)
        };
        Ok([fd(self.sock_ops.fd())?, fd(self.setsockopt.fd())?])
    }
}

/// `struct sock_state` of bpf/keepalive.h: an attachment's record of one socket.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct SockState {
    own: u32,
    own_after: u32,
    auto_ms: i32,
    claim: u16,
    timed_out: u8,
    slot: u8,
}

const _: () = assert!(size_of::<SockState>() == crate::layout::SOCK_STATE_SIZE);
const _: () =
    assert!(std::mem::offset_of!(SockState, claim) == crate::layout::SOCK_STATE_CLAIM_OFFSET);

// SAFETY: repr(C), integers only, no padding (its size is asserted above against the C
// struct's), so any bit pattern is a valid value.
unsafe impl aya::Pod for SockState {}

/// The records of which sockets keepalive's attachments configured (their sock_states
/// maps), for `attach --existing`: a connection some attachment configured at connect
/// or accept, or that an earlier `--existing` changed, is left alone; one that
/// `--existing` changes is recorded as its target attachment's, so that its programs
/// treat it as one they configured (under `force` they rewrite the program's later
/// calls; `auto` follows its timings) and its timeout is counted, once.
pub struct Claims {
    target: SkStorage<MapData, SockState>,
    /// The other attachments' records: a connection one of them claimed (made in its
    /// cgroup before its process moved, say) is theirs.
    others: Vec<SkStorage<MapData, SockState>>,
}

impl Claims {
    /// The records of the attachment pinned in `target`, and of those pinned in
    /// `others` that can be opened.
    pub fn open(target: &Path, others: &[PathBuf]) -> Result<Claims, Error> {
        Ok(Claims {
            target: records(target)?,
            others: others.iter().filter_map(|dir| records(dir).ok()).collect(),
        })
    }

    /// Whether an attachment (or an earlier `--existing`) configured `socket`: the
    /// target or another pinned attachment holds it as its own. A record that an
    /// inner attachment claimed it is not enough: that attachment may be gone since
    /// (detached, or replaced with other rules), and its connections followed by
    /// nobody. (A connection of a `--cgroup` run below, whose process moved up into
    /// the target since, is taken as the target's then: runs pin nothing.)
    pub fn configured(&self, socket: BorrowedFd<'_>) -> bool {
        std::iter::once(&self.target)
            .chain(&self.others)
            .any(|map| {
                map.get(&socket, 0)
                    .is_ok_and(|state| state.claim == crate::layout::CLAIM_MINE)
            })
    }

    /// Records `socket` as configured by the target attachment: `own` (a bit per
    /// option, in the order of keepalive-config's `Opt`) is what the program had set
    /// itself, `auto_ms` the user timeout `auto` gave it (0 for none), and `slot` the
    /// rule whose settings it got (0 for the attachment's own, as
    /// [`Policy::slot_for`] numbers them).
    pub fn adopt(
        &mut self,
        socket: BorrowedFd<'_>,
        own: u32,
        auto_ms: i32,
        slot: usize,
    ) -> Result<(), Error> {
        let earlier = self.target.get(&socket, 0).unwrap_or_default();
        let state = SockState {
            own: earlier.own | own,
            auto_ms,
            claim: crate::layout::CLAIM_MINE,
            slot: slot as u8,
            ..earlier
        };
        self.target.insert(&socket, state, 0).map_err(|e| {
            Error::new(format!(
                "cannot record the connection as configured: {}",
                chain(&e)
            ))
        })
    }
}

/// The sock_states map of the attachment pinned in `dir`: its pin (which the three
/// capabilities open), or, in pins made before it was pinned, found from the sock_ops
/// program's maps (by id, which needs CAP_SYS_ADMIN).
fn records(dir: &Path) -> Result<SkStorage<MapData, SockState>, Error> {
    let fail = |e: &dyn std::error::Error| {
        Error::new(format!(
            "cannot open the socket records of {}: {}",
            dir.display(),
            chain(e)
        ))
    };
    let map = match MapData::from_pin(dir.join(pin::SOCK_STATES)) {
        Ok(map) => map,
        Err(_) => {
            let program = ProgramInfo::from_pin(dir.join(pin::SOCK_OPS)).map_err(|e| fail(&e))?;
            map_of(&program, pin::SOCK_STATES)?
        }
    };
    SkStorage::try_from(aya::maps::Map::SkStorage(map)).map_err(|e| fail(&e))
}

/// Keepalive's sock_ops program among the programs `ids`, found by name (which only
/// CAP_SYS_ADMIN can read).
pub fn keepalive_sock_ops(ids: &[u32]) -> Option<ProgramInfo> {
    if ids.is_empty() {
        return None;
    }
    aya::programs::loaded_programs()
        .flatten()
        .find(|p| ids.contains(&p.id()) && p.name_as_str() == Some(SOCK_OPS))
}

/// The map named `name` among those `program` uses, opened by id (CAP_SYS_ADMIN).
pub(crate) fn map_of(program: &ProgramInfo, name: &str) -> Result<MapData, Error> {
    let fail = |e: &dyn std::error::Error| {
        Error::new(format!(
            "cannot open map {name} of program {}: {}",
            program.id(),
            chain(e)
        ))
    };
    let ids = program.map_ids().map_err(|e| fail(&e))?;
    let id = map_named(ids.unwrap_or_default(), name)
        .ok_or_else(|| Error::new(format!("program {} has no map {name}", program.id())))?;
    MapData::from_id(id).map_err(|e| fail(&e))
}

/// The id of the map named `name` among the map `ids` of a program.
pub(crate) fn map_named(ids: Vec<u32>, name: &str) -> Option<u32> {
    ids.into_iter()
        .find(|&id| aya::maps::MapInfo::from_id(id).is_ok_and(|m| m.name_as_str() == Some(name)))
}

/// The policy, its rules' counters and the counters of keepalive's sock_ops `program`,
/// read through its maps, without pins: how `status` reads a `keepalive --cgroup` run.
pub fn read_running(
    program: &ProgramInfo,
) -> Result<(Policy, Vec<RuleCounters>, [u64; COUNTER_NAMES.len()]), Error> {
    let fail = |what: &str, e: &dyn std::error::Error| {
        Error::new(format!(
            "cannot read the {what} of program {}: {}",
            program.id(),
            chain(e)
        ))
    };
    let settings: Array<MapData, Settings> =
        Array::try_from(aya::maps::Map::Array(map_of(program, pin::SETTINGS)?))
            .map_err(|e| fail("settings", &e))?;
    let counters: Array<MapData, u64> =
        Array::try_from(aya::maps::Map::Array(map_of(program, pin::COUNTERS)?))
            .map_err(|e| fail("counters", &e))?;
    let settings = settings.get(&0, 0).map_err(|e| fail("settings", &e))?;
    let (policy, rule_counters) = policy_of(settings, RuleStore::of_program(program)?.as_ref())?;
    Ok((
        policy,
        rule_counters,
        std::array::from_fn(|i| counters.get(&(i as u32), 0).unwrap_or(0)),
    ))
}

/// The policy of `settings` and the rule maps, if there are any, and its rules'
/// counters.
fn policy_of(
    settings: Settings,
    rules: Option<&RuleStore>,
) -> Result<(Policy, Vec<RuleCounters>), Error> {
    let Some(rules) = rules else {
        return Ok((Policy::from(settings.to_config()), Vec::new()));
    };
    let policy = rule_maps::read_back(settings.to_config(), &rules.read()?);
    let counters = rules.counters(policy.rules.len());
    Ok((policy, counters))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verifiers_reason_is_found_above_its_statistics() {
        let log = "0: R1=ctx() R10=fp0\n\
                   12: (0f) r1 += r2\n\
                   R1 pointer arithmetic of map value goes out of range, prohibited for !root\n\
                   processed 19 insns (limit 1000000) max_states_per_insn 0 total_states 1\n\
                   \n";
        assert_eq!(
            verifier_reason(log),
            Some("R1 pointer arithmetic of map value goes out of range, prohibited for !root")
        );
        assert_eq!(verifier_reason("processed 3 insns\n"), None);
    }
}
