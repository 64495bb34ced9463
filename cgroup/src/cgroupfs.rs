//! The cgroup2 hierarchy: where it is mounted, which cgroup a process is in, and the
//! child cgroups `keepalive --cgroup` makes and removes.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::Error;

/// Where cgroup2 is mounted: read from /proc/self/mountinfo, since it is not always
/// /sys/fs/cgroup (hybrid systems mount it at /sys/fs/cgroup/unified).
pub fn mount_point() -> Result<PathBuf, Error> {
    let text = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::new(format!("cannot read /proc/self/mountinfo: {e}")))?;
    mount_point_in(&text).ok_or_else(|| {
        Error::new(
            "no cgroup2 file system is mounted; cgroup mode needs the unified (v2) hierarchy",
        )
    })
}

/// The first cgroup2 mount in a mountinfo text: field 5 is the mount point, and the
/// file system type follows the " - " separator.
fn mount_point_in(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (mount, fs_part) = line.split_once(" - ")?;
        if fs_part.split(' ').next()? != "cgroup2" {
            return None;
        }
        mount
            .split(' ')
            .nth(4)
            .map(|point| PathBuf::from(unescape(point)))
    })
}

/// mountinfo writes space, tab, newline and backslash as octal escapes (\040).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let digits = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(digits, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup2 directory of `pid` ("self" for this process).
pub fn cgroup_of(mount: &Path, pid: &str) -> Result<PathBuf, Error> {
    let file = format!("/proc/{pid}/cgroup");
    let text =
        fs::read_to_string(&file).map_err(|e| Error::new(format!("cannot read {file}: {e}")))?;
    let relative = text
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .ok_or_else(|| Error::new(format!("{file} names no cgroup2 cgroup")))?;
    Ok(mount.join(relative.trim_start_matches('/')))
}

/// A CGROUP argument: a directory under the cgroup2 mount, given either as a path
/// that already lies under it or relative to it (`system.slice/nginx.service`, with or
/// without a leading slash).
pub fn resolve(mount: &Path, argument: &Path) -> Result<PathBuf, Error> {
    let path = if argument.starts_with(mount) {
        argument.to_path_buf()
    } else {
        mount.join(argument.strip_prefix("/").unwrap_or(argument))
    };
    match fs::metadata(&path) {
        Ok(meta)
            if meta.is_dir() && meta.dev() == fs::metadata(mount).map(|m| m.dev()).unwrap_or(0) =>
        {
            Ok(path)
        }
        Ok(_) => Err(Error::new(format!(
            "{}: not a cgroup2 directory",
            path.display()
        ))),
        Err(e) => Err(Error::new(format!("cgroup {}: {e}", path.display()))),
    }
}

/// Whether `mount` shows this process the whole cgroup2 hierarchy: it is in the
/// initial cgroup namespace (a fixed inode number) and the mount's root is the
/// hierarchy's. Inside a container's cgroup namespace, or through a mount of a
/// subtree, cgroups outside the view look absent but are not.
pub fn sees_whole_hierarchy(mount: &Path) -> bool {
    const PROC_CGROUP_INIT_INO: u64 = 0xEFFF_FFFB;
    let initial =
        fs::metadata("/proc/self/ns/cgroup").is_ok_and(|m| m.ino() == PROC_CGROUP_INIT_INO);
    let whole = fs::read_to_string("/proc/self/mountinfo").is_ok_and(|text| {
        text.lines().any(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            line.contains(" - cgroup2 ")
                && fields.get(4).map(|p| Path::new(p) == mount) == Some(true)
                && fields.get(3) == Some(&"/")
        })
    });
    initial && whole
}

/// The cgroup's id, as BPF and `status` name it: its directory's inode number.
pub fn id(path: &Path) -> io::Result<u64> {
    Ok(fs::metadata(path)?.ino())
}

/// Finds the directory of the cgroup with `id` below `mount`, if it still exists.
pub fn find_by_id(mount: &Path, id: u64) -> Option<PathBuf> {
    walk(mount).find(|dir| self::id(dir).ok() == Some(id))
}

/// The ids of every cgroup below `mount`.
pub fn all_ids(mount: &Path) -> std::collections::HashSet<u64> {
    walk(mount).filter_map(|dir| self::id(&dir).ok()).collect()
}

/// Every cgroup directory below `mount`, depth first.
fn walk(mount: &Path) -> impl Iterator<Item = PathBuf> {
    let mut stack = vec![mount.to_path_buf()];
    std::iter::from_fn(move || {
        let dir = stack.pop()?;
        if let Ok(entries) = fs::read_dir(&dir) {
            stack.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
        Some(dir)
    })
}

/// The processes in a cgroup (not in its children).
pub fn processes(path: &Path) -> io::Result<Vec<u32>> {
    let text = fs::read_to_string(path.join("cgroup.procs"))?;
    Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// Moves process `pid` into the cgroup at `path`.
pub fn move_process(path: &Path, pid: u32) -> io::Result<()> {
    fs::write(path.join("cgroup.procs"), pid.to_string())
}
