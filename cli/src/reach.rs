//! Whether preload mode can reach a program at all. ld.so loads LD_PRELOAD only into
//! dynamically linked programs, ignores it (for any path with a slash, as ours has)
//! when the kernel runs the exec in secure mode (AT_SECURE), and Go programs make their
//! system calls themselves, bypassing the C library's socket(); for all of these,
//! `keepalive -- COMMAND` would silently do nothing.

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Why the library cannot reach a program, in the words of the warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    Static,
    Go,
    Secure(SecureReason),
}

impl Unreachable {
    pub fn describe(self) -> String {
        match self {
            Unreachable::Static => "is statically linked".into(),
            Unreachable::Go => "is a Go program, which makes its system calls itself".into(),
            Unreachable::Secure(reason) => format!(
                "{}, so the kernel runs it in secure mode and ld.so ignores LD_PRELOAD",
                reason.describe()
            ),
        }
    }
}

/// Checks the program COMMAND names (looked up in PATH as exec would). Programs that
/// cannot be found or read are left for exec to report.
pub fn check(program: &OsStr) -> Option<(PathBuf, Unreachable)> {
    let path = locate(program)?;
    let file = ProgramFile::read(&path)?;
    if let Some(reason) = secure_exec(&Caller::current(), &file) {
        return Some((path, Unreachable::Secure(reason)));
    }
    let file = File::open(&path).ok()?;
    let elf = Elf::read(&file)?;
    // Go first: most Go programs are static too, and Go is the reason that holds even
    // for those that are not.
    if elf.has_go_build_id(&file) {
        return Some((path, Unreachable::Go));
    }
    (!elf.has_interpreter(&file)).then_some((path, Unreachable::Static))
}

/// Why an exec runs in secure mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecureReason {
    /// The set-user-ID bit makes the effective uid `owner`, not the caller's real `real`.
    SetUid { owner: u32, real: u32 },
    /// The set-group-ID bit makes the effective gid `group`, not the caller's real `real`.
    SetGid { group: u32, real: u32 },
    /// The caller's own effective uid or gid already differs from its real one, so
    /// every exec it makes is in secure mode.
    CallerSetId,
    /// File capabilities (security.capability) raise a non-root caller's privileges.
    Capabilities,
}

impl SecureReason {
    fn describe(self) -> String {
        match self {
            SecureReason::SetUid { owner, real } => {
                format!("is setuid to uid {owner}, and you run as uid {real}")
            }
            SecureReason::SetGid { group, real } => {
                format!("is setgid to gid {group}, and you run as gid {real}")
            }
            SecureReason::CallerSetId => {
                "would start with this command's effective uid or gid, which differs from the \
                 real one"
                    .into()
            }
            SecureReason::Capabilities => {
                "has file capabilities (security.capability) that raise your privileges".into()
            }
        }
    }
}

/// Who runs the exec: the credentials the kernel compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub ruid: u32,
    pub euid: u32,
    pub rgid: u32,
    pub egid: u32,
    /// PR_SET_NO_NEW_PRIVS: exec ignores set-ID bits.
    pub no_new_privs: bool,
    /// The inheritable and bounding capability sets (bit N = capability N).
    pub inheritable: u64,
    pub bounding: u64,
}

impl Caller {
    /// This process: ids from the system calls (which cannot fail), the rest from
    /// /proc/self/status (when it cannot be read: no no_new_privs, no inheritable
    /// capabilities, every capability in the bounding set).
    fn current() -> Caller {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let hex = |name: &str, default: u64| {
            field(name)
                .and_then(|v| u64::from_str_radix(v, 16).ok())
                .unwrap_or(default)
        };
        Caller {
            ruid: rustix::process::getuid().as_raw(),
            euid: rustix::process::geteuid().as_raw(),
            rgid: rustix::process::getgid().as_raw(),
            egid: rustix::process::getegid().as_raw(),
            no_new_privs: field("NoNewPrivs").is_some_and(|v| v == "1"),
            inheritable: hex("CapInh", 0),
            bounding: hex("CapBnd", u64::MAX),
        }
    }
}

/// What of the program file decides secure mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgramFile {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// On a file system mounted nosuid, which ignores set-ID bits and file capabilities.
    pub nosuid: bool,
    pub caps: Option<FileCaps>,
}

impl ProgramFile {
    fn read(path: &Path) -> Option<ProgramFile> {
        let meta = std::fs::metadata(path).ok()?;
        let nosuid = rustix::fs::statvfs(path)
            .is_ok_and(|fs| fs.f_flag.contains(rustix::fs::StatVfsMountFlags::NOSUID));
        // Large enough for every revision (24 bytes); a longer value is not a
        // capability set the kernel would accept either.
        let mut value = [0u8; 32];
        let caps = rustix::fs::getxattr(path, "security.capability", &mut value[..])
            .ok()
            .and_then(|len| FileCaps::parse(value.get(..len)?));
        Some(ProgramFile {
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            nosuid,
            caps,
        })
    }
}

/// A security.capability value (struct vfs_cap_data): the permitted and inheritable
/// sets and the effective flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileCaps {
    pub permitted: u64,
    pub inheritable: u64,
    pub effective: bool,
}

const VFS_CAP_REVISION_MASK: u32 = 0xff00_0000;
const VFS_CAP_REVISION_1: u32 = 0x0100_0000;
const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
const VFS_CAP_REVISION_3: u32 = 0x0300_0000;
const VFS_CAP_FLAGS_EFFECTIVE: u32 = 0x1;

impl FileCaps {
    /// Revision 1 has 32-bit sets; 2 has 64-bit ones; 3 adds the uid that is root for
    /// them. getxattr gives revision 3 only when that uid is not root in the caller's
    /// user namespace, and then the capabilities do not apply to the caller.
    pub fn parse(value: &[u8]) -> Option<FileCaps> {
        let word = |i: usize| -> Option<u64> {
            let bytes = value.get(i * 4..i * 4 + 4)?;
            Some(u64::from(u32::from_le_bytes(bytes.try_into().ok()?)))
        };
        let magic = u32::try_from(word(0)?).ok()?;
        let (permitted, inheritable) = match (magic & VFS_CAP_REVISION_MASK, value.len()) {
            (VFS_CAP_REVISION_1, 12) => (word(1)?, word(2)?),
            (VFS_CAP_REVISION_2, 20) => (word(1)? | word(3)? << 32, word(2)? | word(4)? << 32),
            (VFS_CAP_REVISION_3, 24) if word(5)? == 0 => {
                (word(1)? | word(3)? << 32, word(2)? | word(4)? << 32)
            }
            _ => return None,
        };
        Some(FileCaps {
            permitted,
            inheritable,
            effective: magic & VFS_CAP_FLAGS_EFFECTIVE != 0,
        })
    }
}

const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;
const S_IXGRP: u32 = 0o0010;

/// Whether the kernel runs `file`'s exec by `caller` in secure mode (AT_SECURE), and
/// why: Linux's bprm_fill_uid (fs/exec.c) and cap_bprm_creds_from_file
/// (security/commoncap.c).
///
/// - The new effective uid is the file's owner when the set-user-ID bit is set, and
///   the new effective gid its group when set-group-ID and group execute are both set
///   (set-group-ID alone marks mandatory locking), unless the file system is mounted
///   nosuid or the caller has no_new_privs; otherwise both stay the caller's.
/// - Secure mode when the new effective uid differs from the caller's real uid, or
///   the new effective gid from its real gid: so root running a setuid-root program,
///   or anyone running a program setuid to themselves, is not in secure mode, while
///   root running a program setuid to another user is.
/// - Otherwise, for a caller whose real uid is not root, secure mode when file
///   capabilities raise privileges: the effective flag set, or permitted capabilities
///   left by the bounding set, or inheritable ones the caller holds (nosuid mounts
///   ignore file capabilities). For root they change nothing.
pub fn secure_exec(caller: &Caller, file: &ProgramFile) -> Option<SecureReason> {
    let honoured = !file.nosuid && !caller.no_new_privs;
    let setuid = honoured && file.mode & S_ISUID != 0;
    let setgid = honoured && file.mode & (S_ISGID | S_IXGRP) == S_ISGID | S_IXGRP;
    let euid = if setuid { file.uid } else { caller.euid };
    let egid = if setgid { file.gid } else { caller.egid };
    if euid != caller.ruid {
        return Some(if setuid {
            SecureReason::SetUid {
                owner: euid,
                real: caller.ruid,
            }
        } else {
            SecureReason::CallerSetId
        });
    }
    if egid != caller.rgid {
        return Some(if setgid {
            SecureReason::SetGid {
                group: egid,
                real: caller.rgid,
            }
        } else {
            SecureReason::CallerSetId
        });
    }
    if caller.ruid == 0 || file.nosuid {
        return None;
    }
    let caps = file.caps?;
    let raised = caps.effective
        || caps.permitted & caller.bounding != 0
        || caps.inheritable & caller.inheritable != 0;
    raised.then_some(SecureReason::Capabilities)
}

fn locate(program: &OsStr) -> Option<PathBuf> {
    let program = Path::new(program);
    if program.components().count() > 1 {
        return Some(program.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

const PT_INTERP: u32 = 3;
const GO_BUILD_ID_SECTION: &[u8] = b".note.go.buildid";

/// The parts of a 64-bit little-endian ELF header that matter here (x86_64, aarch64,
/// riscv64: the architectures this project ships for).
struct Elf {
    phoff: u64,
    phentsize: u16,
    phnum: u16,
    shoff: u64,
    shentsize: u16,
    shnum: u16,
    shstrndx: u16,
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn read_at(file: &File, offset: u64, len: usize) -> Option<Vec<u8>> {
    let mut buffer = vec![0; len];
    file.read_exact_at(&mut buffer, offset).ok()?;
    Some(buffer)
}

impl Elf {
    fn read(file: &File) -> Option<Elf> {
        let header = read_at(file, 0, 64)?;
        // Magic, ELFCLASS64, ELFDATA2LSB.
        if header[..4] != *b"\x7fELF" || header[4] != 2 || header[5] != 1 {
            return None;
        }
        Some(Elf {
            phoff: u64_at(&header, 0x20),
            shoff: u64_at(&header, 0x28),
            phentsize: u16_at(&header, 0x36),
            phnum: u16_at(&header, 0x38),
            shentsize: u16_at(&header, 0x3a),
            shnum: u16_at(&header, 0x3c),
            shstrndx: u16_at(&header, 0x3e),
        })
    }

    /// Whether a PT_INTERP segment names a dynamic loader: programs without one are
    /// static, and ld.so never runs for them.
    fn has_interpreter(&self, file: &File) -> bool {
        if self.phentsize < 4 {
            return true; // unreadable: assume the ordinary case, warn about nothing
        }
        let size = usize::from(self.phentsize) * usize::from(self.phnum);
        let Some(table) = read_at(file, self.phoff, size) else {
            return true;
        };
        table
            .chunks_exact(self.phentsize.into())
            .any(|entry| u32_at(entry, 0) == PT_INTERP)
    }

    /// Whether a section is named .note.go.buildid, as the Go linker names its note.
    fn has_go_build_id(&self, file: &File) -> bool {
        if self.shentsize < 0x28 || self.shstrndx >= self.shnum {
            return false;
        }
        let size = usize::from(self.shentsize) * usize::from(self.shnum);
        let Some(table) = read_at(file, self.shoff, size) else {
            return false;
        };
        let sections: Vec<&[u8]> = table.chunks_exact(self.shentsize.into()).collect();
        let names = sections[usize::from(self.shstrndx)];
        let (names_offset, names_size) = (u64_at(names, 0x18), u64_at(names, 0x20));
        let Some(names) = read_at(file, names_offset, names_size.min(1 << 20) as usize) else {
            return false;
        };
        sections.iter().any(|section| {
            let start = u32_at(section, 0) as usize;
            names
                .get(start..)
                .is_some_and(|name| name.starts_with(GO_BUILD_ID_SECTION))
                && names.get(start + GO_BUILD_ID_SECTION.len()) == Some(&0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOBODY: u32 = 65534;
    const ALL_CAPS: u64 = (1 << 41) - 1;

    fn caller(uid: u32, gid: u32) -> Caller {
        Caller {
            ruid: uid,
            euid: uid,
            rgid: gid,
            egid: gid,
            no_new_privs: false,
            inheritable: 0,
            bounding: ALL_CAPS,
        }
    }

    fn file(mode: u32, uid: u32, gid: u32) -> ProgramFile {
        ProgramFile {
            mode: 0o100_000 | mode,
            uid,
            gid,
            nosuid: false,
            caps: None,
        }
    }

    const NET_RAW_EP: FileCaps = FileCaps {
        permitted: 1 << 13,
        inheritable: 0,
        effective: true,
    };

    #[test]
    fn plain_programs_are_never_secure() {
        assert_eq!(secure_exec(&caller(0, 0), &file(0o755, 0, 0)), None);
        assert_eq!(
            secure_exec(&caller(NOBODY, NOBODY), &file(0o755, 0, 0)),
            None
        );
    }

    #[test]
    fn setuid_is_secure_only_when_the_owner_is_not_the_real_uid() {
        // root running a setuid-root program: euid stays 0 = ruid.
        assert_eq!(secure_exec(&caller(0, 0), &file(0o4755, 0, 0)), None);
        // root running a program setuid to another user: euid changes.
        assert_eq!(
            secure_exec(&caller(0, 0), &file(0o4755, NOBODY, 0)),
            Some(SecureReason::SetUid {
                owner: NOBODY,
                real: 0
            })
        );
        // A user running a setuid-root program.
        assert_eq!(
            secure_exec(&caller(1000, 1000), &file(0o4755, 0, 0)),
            Some(SecureReason::SetUid {
                owner: 0,
                real: 1000
            })
        );
        // A user running a program setuid to themselves.
        assert_eq!(
            secure_exec(&caller(1000, 1000), &file(0o4755, 1000, 0)),
            None
        );
    }

    #[test]
    fn setgid_is_secure_only_when_the_group_is_not_the_real_gid() {
        assert_eq!(secure_exec(&caller(1000, 50), &file(0o2755, 0, 50)), None);
        assert_eq!(
            secure_exec(&caller(1000, 1000), &file(0o2755, 0, 50)),
            Some(SecureReason::SetGid {
                group: 50,
                real: 1000
            })
        );
        assert_eq!(
            secure_exec(&caller(0, 0), &file(0o2755, 0, NOBODY)),
            Some(SecureReason::SetGid {
                group: NOBODY,
                real: 0
            })
        );
        // Set-group-ID without group execute is the mandatory-locking mark.
        assert_eq!(secure_exec(&caller(0, 0), &file(0o2745, 0, NOBODY)), None);
    }

    #[test]
    fn nosuid_and_no_new_privs_ignore_the_set_id_bits() {
        let mut nosuid = file(0o6755, 0, 0);
        nosuid.nosuid = true;
        nosuid.caps = Some(NET_RAW_EP);
        assert_eq!(secure_exec(&caller(1000, 1000), &nosuid), None);
        let mut nnp = caller(1000, 1000);
        nnp.no_new_privs = true;
        assert_eq!(secure_exec(&nnp, &file(0o6755, 0, 0)), None);
    }

    #[test]
    fn a_caller_already_set_id_makes_every_exec_secure() {
        let mut setuid = caller(1000, 1000);
        setuid.euid = 0;
        assert_eq!(
            secure_exec(&setuid, &file(0o755, 0, 0)),
            Some(SecureReason::CallerSetId)
        );
        let mut setgid = caller(1000, 1000);
        setgid.egid = 0;
        assert_eq!(
            secure_exec(&setgid, &file(0o755, 0, 0)),
            Some(SecureReason::CallerSetId)
        );
        // Unless the program sets them back to the real ones.
        assert_eq!(secure_exec(&setuid, &file(0o4755, 1000, 0)), None);
    }

    #[test]
    fn file_capabilities_make_a_non_root_exec_secure() {
        let mut with_caps = file(0o755, 0, 0);
        with_caps.caps = Some(NET_RAW_EP);
        assert_eq!(secure_exec(&caller(0, 0), &with_caps), None);
        assert_eq!(
            secure_exec(&caller(NOBODY, NOBODY), &with_caps),
            Some(SecureReason::Capabilities)
        );
        // Permitted without effective still raises the permitted set...
        with_caps.caps = Some(FileCaps {
            effective: false,
            ..NET_RAW_EP
        });
        assert_eq!(
            secure_exec(&caller(NOBODY, NOBODY), &with_caps),
            Some(SecureReason::Capabilities)
        );
        // ...unless the bounding set drops it.
        let mut bounded = caller(NOBODY, NOBODY);
        bounded.bounding = !(1 << 13);
        assert_eq!(secure_exec(&bounded, &with_caps), None);
        // Inheritable file capabilities count only when the caller holds them.
        with_caps.caps = Some(FileCaps {
            permitted: 0,
            inheritable: 1 << 13,
            effective: false,
        });
        assert_eq!(secure_exec(&caller(NOBODY, NOBODY), &with_caps), None);
        let mut inheriting = caller(NOBODY, NOBODY);
        inheriting.inheritable = 1 << 13;
        assert_eq!(
            secure_exec(&inheriting, &with_caps),
            Some(SecureReason::Capabilities)
        );
    }

    #[test]
    fn capability_values_parse_by_revision() {
        let words = |w: &[u32]| -> Vec<u8> { w.iter().flat_map(|x| x.to_le_bytes()).collect() };
        assert_eq!(
            FileCaps::parse(&words(&[0x0200_0001, 1 << 13, 0, 1, 0])),
            Some(FileCaps {
                permitted: 1 << 13 | 1 << 32,
                inheritable: 0,
                effective: true
            })
        );
        assert_eq!(
            FileCaps::parse(&words(&[0x0100_0000, 0, 4])),
            Some(FileCaps {
                permitted: 0,
                inheritable: 4,
                effective: false
            })
        );
        assert_eq!(
            FileCaps::parse(&words(&[0x0300_0001, 1, 0, 0, 0, 0])).map(|c| c.permitted),
            Some(1)
        );
        // Another namespace's root, a wrong length, an unknown revision, garbage.
        assert_eq!(
            FileCaps::parse(&words(&[0x0300_0001, 1, 0, 0, 0, 1000])),
            None
        );
        assert_eq!(FileCaps::parse(&words(&[0x0200_0001, 1, 0])), None);
        assert_eq!(FileCaps::parse(&words(&[0x0400_0001, 1, 0, 0, 0])), None);
        assert_eq!(FileCaps::parse(&[1, 2]), None);
        assert_eq!(FileCaps::parse(&[]), None);
    }
}
