//! Whether preload mode can reach a program at all. ld.so loads LD_PRELOAD only into
//! dynamically linked programs, ignores it for setuid and setgid ones, and Go programs
//! make their system calls themselves, bypassing the C library's socket(); for all of
//! these, `keepalive -- COMMAND` would silently do nothing.

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why the library cannot reach a program, in the words of the warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    Static,
    Go,
    SetId,
}

impl Unreachable {
    pub fn describe(self) -> &'static str {
        match self {
            Unreachable::Static => "is statically linked",
            Unreachable::Go => "is a Go program, which makes its system calls itself",
            Unreachable::SetId => "is setuid or setgid, and ld.so ignores LD_PRELOAD for it",
        }
    }
}

/// Checks the program COMMAND names (looked up in PATH as exec would). Programs that
/// cannot be found or read are left for exec to report.
pub fn check(program: &OsStr) -> Option<(PathBuf, Unreachable)> {
    let path = locate(program)?;
    let mode = std::fs::metadata(&path).ok()?.permissions().mode();
    if mode & 0o6000 != 0 {
        return Some((path, Unreachable::SetId));
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
