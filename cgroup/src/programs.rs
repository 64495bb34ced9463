//! The BPF object built from bpf/keepalive.bpf.c: loading it with its settings,
//! attaching and detaching its two programs, pinning them, and reading them back from
//! their pins.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use aya::maps::{Array, MapData};
use aya::programs::{CgroupSockopt, ProgramError, SockOps};
use aya::{Ebpf, EbpfLoader};

use crate::Error;
use crate::hooks;
use crate::settings::Settings;

/// The object clang built, aligned as aya needs it.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/keepalive.bpf.o"));

const SOCK_OPS: &str = "on_sockops";
const SETSOCKOPT: &str = "on_setsockopt";

/// What the program counts, in the order of `enum counter` in keepalive.bpf.c.
pub const COUNTER_NAMES: [&str; 5] = [
    "connections",
    "options_set",
    "options_failed",
    "own_kept",
    "own_rewritten",
];

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
            .map_err(|e| Error::new(format!("cannot load the BPF object: {e}")))?;
        let map = ebpf
            .map_mut(pin::SETTINGS)
            .expect("the object defines settings");
        Array::<_, Settings>::try_from(map)
            .and_then(|mut array| array.set(0, settings, 0))
            .map_err(|e| Error::new(format!("cannot write the settings map: {e}")))?;
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

    /// Pins the programs and the maps `status` reads into `dir`, which must exist on
    /// a bpffs.
    pub fn pin(&mut self, dir: &Path) -> Result<(), Error> {
        let pinned = |what: &str, e: &dyn std::fmt::Display| {
            Error::new(format!(
                "cannot pin {what} at {}: {e}",
                dir.join(what).display()
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

/// A program the kernel would not load: usually a kernel too old for what the program
/// uses, so the message says what it needs.
fn refused(error: ProgramError) -> Error {
    let detail = match &error {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let last = verifier_log.to_string();
            let last = last
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .to_string();
            format!("{io_error}; verifier: {last}")
        }
        other => other.to_string(),
    };
    Error::new(format!(
        "the kernel refused the BPF program ({detail}); cgroup mode needs Linux {} or later",
        crate::preflight::MIN_KERNEL_TEXT
    ))
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
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            Error::new(format!("cannot open {}: {e}", dir.join(what).display()))
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
            .map_err(|e| Error::new(format!("cannot read the settings: {e}")))
    }

    /// Replaces the settings in place: connections made from now on get the new ones.
    pub fn set_settings(&mut self, settings: Settings) -> Result<(), Error> {
        self.settings
            .set(0, settings, 0)
            .map_err(|e| Error::new(format!("cannot write the settings: {e}")))
    }

    pub fn counters(&self) -> [u64; COUNTER_NAMES.len()] {
        std::array::from_fn(|i| self.counters.get(&(i as u32), 0).unwrap_or(0))
    }

    pub fn attach(&self, cgroup: BorrowedFd<'_>) -> io::Result<()> {
        hooks::attach_both(cgroup, self.fds()?)
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
