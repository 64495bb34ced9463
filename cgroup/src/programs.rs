//! The BPF object built from bpf/keepalive.bpf.c: loading it with its settings,
//! attaching and detaching its two programs, pinning them, and reading them back from
//! their pins.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use aya::maps::{Array, MapData};
use aya::programs::{CgroupSockopt, ProgramError, SockOps};
use aya::{Ebpf, EbpfLoader};

use crate::hooks;
use crate::settings::Settings;
use crate::{Error, chain};

/// The object clang built, aligned as aya needs it.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/keepalive.bpf.o"));

/// The programs' names, as the kernel lists them.
pub const SOCK_OPS: &str = "on_sockops";
const SETSOCKOPT: &str = "on_setsockopt";

pub use crate::layout::COUNTER_NAMES;

/// The two programs' ids and tags (a hash of their instructions, which tells one
/// build of keepalive.bpf.c from another).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub ids: [u32; 2],
    pub tags: [u64; 2],
}

fn identity(
    infos: [Result<aya::programs::ProgramInfo, ProgramError>; 2],
) -> Result<Identity, Error> {
    let [a, b] = infos;
    let (a, b) = (
        a.map_err(|e| Error::new(format!("cannot read the program's identity: {}", chain(&e))))?,
        b.map_err(|e| Error::new(format!("cannot read the program's identity: {}", chain(&e))))?,
    );
    Ok(Identity {
        ids: [a.id(), b.id()],
        tags: [a.tag(), b.tag()],
    })
}

/// The names of the pins in a pin directory.
pub mod pin {
    pub const SOCK_OPS: &str = "sock_ops";
    pub const SETSOCKOPT: &str = "setsockopt";
    pub const SETTINGS: &str = "settings";
    pub const COUNTERS: &str = "counters";
}

/// The two programs, loaded and verified, with their maps.
pub struct Loaded {
    ebpf: Ebpf,
}

impl Loaded {
    /// Loads both programs into the kernel and gives them `settings`.
    pub fn load(settings: Settings) -> Result<Loaded, Error> {
        let mut ebpf = EbpfLoader::new()
            .load(OBJECT)
            .map_err(|e| Error::new(format!("cannot load the BPF object: {}", chain(&e))))?;
        let map = ebpf
            .map_mut(pin::SETTINGS)
            .expect("the object defines settings");
        Array::<_, Settings>::try_from(map)
            .and_then(|mut array| array.set(0, settings, 0))
            .map_err(|e| Error::new(format!("cannot write the settings map: {}", chain(&e))))?;
        let sock_ops: &mut SockOps = program(&mut ebpf, SOCK_OPS)?;
        sock_ops.load().map_err(refused)?;
        let setsockopt: &mut CgroupSockopt = program(&mut ebpf, SETSOCKOPT)?;
        setsockopt.load().map_err(refused)?;
        Ok(Loaded { ebpf })
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
        identity([SOCK_OPS, SETSOCKOPT].map(|name| {
            let program = self.ebpf.program(name).expect("the object defines it");
            program.info()
        }))
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
        for (name, file) in [(SOCK_OPS, pin::SOCK_OPS), (SETSOCKOPT, pin::SETSOCKOPT)] {
            let program = self.ebpf.program_mut(name).expect("the object defines it");
            program.pin(dir.join(file)).map_err(|e| pinned(file, &e))?;
        }
        for name in [pin::SETTINGS, pin::COUNTERS] {
            let map = self.ebpf.map(name).expect("the object defines it");
            map.pin(dir.join(name)).map_err(|e| pinned(name, &e))?;
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
    settings: Array<MapData, Settings>,
    counters: Array<MapData, u64>,
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
        Ok(Pinned {
            sock_ops,
            setsockopt,
            settings,
            counters,
        })
    }

    pub fn settings(&self) -> Result<Settings, Error> {
        self.settings
            .get(&0, 0)
            .map_err(|e| Error::new(format!("cannot read the settings: {}", chain(&e))))
    }

    pub fn identity(&self) -> Result<Identity, Error> {
        identity([self.sock_ops.info(), self.setsockopt.info()])
    }

    /// Replaces the settings in place: connections made from now on get the new ones.
    pub fn set_settings(&mut self, settings: Settings) -> Result<(), Error> {
        self.settings
            .set(0, settings, 0)
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
