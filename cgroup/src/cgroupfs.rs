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
        Error::new(no_cgroup2(&text, |name| {
            Path::new("/run/netns").join(name).exists()
        }))
    })
}

/// Why no cgroup2 mount is visible, in words for the user. `ip netns exec NAME`
/// unmounts /sys in a new mount namespace and mounts a fresh sysfs there (with NAME as
/// its source), so the cgroup2 and bpffs mounts below /sys vanish for the command it
/// runs: seen as a sysfs at /sys with nothing mounted below it. `is_netns` tells
/// whether a name is one of /run/netns.
fn no_cgroup2(mountinfo: &str, is_netns: impl Fn(&str) -> bool) -> String {
    const DEFAULT: &str =
        "no cgroup2 file system is mounted; cgroup mode needs the unified (v2) hierarchy";
    // (mount point, file system type, source) of each mount.
    let mounts: Vec<(String, &str, String)> = mountinfo
        .lines()
        .filter_map(|line| {
            let (mount, fs_part) = line.split_once(" - ")?;
            let mut fs_fields = fs_part.split(' ');
            let fs_type = fs_fields.next()?;
            let source = unescape(fs_fields.next()?);
            Some((unescape(mount.split(' ').nth(4)?), fs_type, source))
        })
        .collect();
    // The last mount at /sys is the one on top.
    let Some((_, "sysfs", source)) = mounts.iter().rev().find(|(point, ..)| point == "/sys") else {
        return DEFAULT.into();
    };
    if mounts.iter().any(|(point, ..)| point.starts_with("/sys/")) {
        return DEFAULT.into();
    }
    if is_netns(source) {
        format!(
            "no cgroup2 file system is visible: `ip netns exec {source}` mounted a fresh /sys, \
             which hides it; run `nsenter --net=/run/netns/{source} keepalive ...` instead, \
             which enters the network namespace and keeps the mounts"
        )
    } else {
        "no cgroup2 file system is visible: /sys is a fresh sysfs with nothing mounted below \
         it, as `ip netns exec` leaves it; if so, run `nsenter --net=/run/netns/NAME \
         keepalive ...` instead, which enters the network namespace and keeps the mounts"
            .into()
    }
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

/// Whether a CGROUP argument may name the root cgroup, which holds every process of
/// the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootCgroup {
    Refuse,
    Allow,
}

/// Why a CGROUP argument is refused.
#[derive(Debug)]
pub(crate) enum Refusal {
    Empty,
    /// A `.` or `..` component: a shell user means the current directory by it, but
    /// CGROUP is relative to the cgroup2 mount, where `.` is the root cgroup.
    Dots,
    /// Nothing at `path`, where the argument leads under the mount.
    Missing {
        path: PathBuf,
        error: io::Error,
    },
    /// `path` cannot be looked up.
    Unreadable {
        path: PathBuf,
        error: io::Error,
    },
    /// The argument is, or leads to, `resolved`, outside the mount.
    Outside {
        resolved: PathBuf,
    },
    /// The root cgroup, with [`RootCgroup::Refuse`].
    Root,
}

impl Refusal {
    /// One line: the argument, what is wrong, and what is accepted.
    fn message(&self, mount: &Path, argument: &Path) -> String {
        let arg = argument.display();
        let mount = mount.display();
        let accepted = format!(
            "give a path relative to the cgroup2 mount {mount} (system.slice/nginx.service, \
             with or without a leading /) or absolute under it"
        );
        match self {
            Refusal::Empty => format!("the CGROUP argument is empty; {accepted}"),
            Refusal::Dots => format!(
                "cgroup {arg}: `.` and `..` are refused, since CGROUP is not taken relative to \
                 the current directory; {accepted} (\"$PWD\" for the current directory)"
            ),
            Refusal::Missing { path, error } => {
                format!("cgroup {arg}: {}: {error}; {accepted}", path.display())
            }
            Refusal::Unreadable { path, error } => {
                format!("cgroup {arg}: {}: {error}", path.display())
            }
            Refusal::Outside { resolved } if resolved.as_path() != argument => format!(
                "{arg} (which leads to {}) is not in the cgroup2 hierarchy mounted at {mount}; \
                 give a path under it, or relative to it",
                resolved.display()
            ),
            Refusal::Outside { .. } => format!(
                "{arg} is not in the cgroup2 hierarchy mounted at {mount}; give a path under \
                 it, or relative to it"
            ),
            Refusal::Root => format!(
                "cgroup {arg}: this is the root cgroup, which holds every process on the \
                 machine; add --root if that is what you mean"
            ),
        }
    }
}

/// A CGROUP argument: a directory under the cgroup2 mount, given either as a path
/// that lies under it (symlinks are followed, and where they lead must lie under it
/// too) or relative to it (`system.slice/nginx.service`, with or without a leading
/// slash). The result is canonical.
pub fn resolve(mount: &Path, argument: &Path, root: RootCgroup) -> Result<PathBuf, Error> {
    let path = resolve_in(mount, argument, root, |p| fs::canonicalize(p))
        .map_err(|refusal| Error::new(refusal.message(mount, argument)))?;
    // It exists; it must also be a directory of the cgroup2 file system (not, say,
    // cgroup.procs, or another file system mounted below).
    let mount_dev = fs::metadata(mount).map(|m| m.dev()).ok();
    match fs::metadata(&path) {
        Ok(meta) if meta.is_dir() && Some(meta.dev()) == mount_dev => Ok(path),
        Ok(_) => Err(Error::new(format!(
            "cgroup {}: {} is not a cgroup2 directory",
            argument.display(),
            path.display()
        ))),
        Err(e) => Err(Error::new(format!(
            "cgroup {}: {}: {e}",
            argument.display(),
            path.display()
        ))),
    }
}

/// The path logic of [`resolve`], reaching the file system only through
/// `canonicalize` (fs::canonicalize: symlinks resolved, an error when nothing is there).
///
/// - Empty, and `.` or `..` components anywhere, are refused.
/// - A relative argument, or an absolute one under the mount, is that path under the
///   mount.
/// - Another absolute argument is first taken relative to the mount, as systemd
///   writes cgroups (`/system.slice/nginx.service`); when nothing is there, as the
///   path itself, which may be a link into the mount or a directory outside it.
/// - Where it leads must lie under the mount, and may be the mount itself (the root
///   cgroup) only with [`RootCgroup::Allow`].
pub(crate) fn resolve_in(
    mount: &Path,
    argument: &Path,
    root: RootCgroup,
    canonicalize: impl Fn(&Path) -> io::Result<PathBuf>,
) -> Result<PathBuf, Refusal> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = argument.as_os_str().as_bytes();
    if bytes.is_empty() {
        return Err(Refusal::Empty);
    }
    if bytes.split(|&b| b == b'/').any(|c| c == b"." || c == b"..") {
        return Err(Refusal::Dots);
    }
    let look_up = |path: PathBuf| match canonicalize(&path) {
        Ok(found) => Ok(found),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            Err(Refusal::Missing { path, error })
        }
        Err(error) => Err(Refusal::Unreadable { path, error }),
    };
    let found = if argument.is_relative() || argument.starts_with(mount) {
        look_up(mount.join(argument))?
    } else {
        let relative = argument.strip_prefix("/").unwrap_or(argument);
        match look_up(mount.join(relative)) {
            Err(Refusal::Missing { path, error }) => match look_up(argument.to_path_buf()) {
                Err(Refusal::Missing { .. }) => return Err(Refusal::Missing { path, error }),
                other => other?,
            },
            other => other?,
        }
    };
    if !found.starts_with(mount) {
        return Err(Refusal::Outside { resolved: found });
    }
    if found == mount && root == RootCgroup::Refuse {
        return Err(Refusal::Root);
    }
    Ok(found)
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

/// Every cgroup below `mount`, by id: one walk of the hierarchy, for commands that look
/// up several pin directories' cgroups.
pub fn by_id(mount: &Path) -> std::collections::HashMap<u64, PathBuf> {
    walk(mount)
        .filter_map(|dir| Some((self::id(&dir).ok()?, dir)))
        .collect()
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

/// Every cgroup below `mount` whose name starts with `prefix`.
pub fn named_like(mount: &Path, prefix: &str) -> Vec<PathBuf> {
    walk(mount)
        .filter(|dir| {
            dir.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(prefix))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNT: &str = "/sys/fs/cgroup/unified";

    /// A file system with a few cgroups, a cgroup v1 hierarchy, a directory elsewhere
    /// and links, for resolve_in.
    fn canonicalize(path: &Path) -> io::Result<PathBuf> {
        let dirs = [
            MOUNT.to_string(),
            format!("{MOUNT}/system.slice"),
            format!("{MOUNT}/system.slice/nginx.service"),
            "/sys/fs/cgroup/cpu".into(),
            "/tmp/outside".into(),
        ];
        let links = [
            ("/run/svc", format!("{MOUNT}/system.slice/nginx.service")),
            ("/run/away", "/tmp/outside".into()),
            ("/run/top", MOUNT.into()),
        ];
        if path == Path::new("/denied") {
            return Err(io::ErrorKind::PermissionDenied.into());
        }
        if let Some((_, to)) = links.iter().find(|(from, _)| path == Path::new(from)) {
            return Ok(PathBuf::from(to));
        }
        match dirs.iter().find(|d| path == Path::new(d)) {
            Some(dir) => Ok(PathBuf::from(dir)),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }

    fn resolve(argument: &str, root: RootCgroup) -> Result<PathBuf, Refusal> {
        resolve_in(Path::new(MOUNT), Path::new(argument), root, canonicalize)
    }

    fn nginx() -> PathBuf {
        PathBuf::from(format!("{MOUNT}/system.slice/nginx.service"))
    }

    #[test]
    fn paths_relative_to_the_mount_or_absolute_under_it_resolve() {
        let absolute = format!("{MOUNT}/system.slice/nginx.service");
        for argument in [
            "system.slice/nginx.service",
            "system.slice/nginx.service/",
            "/system.slice/nginx.service",
            "system.slice//nginx.service",
            &absolute,
            "/run/svc",
        ] {
            assert_eq!(
                resolve(argument, RootCgroup::Refuse).ok(),
                Some(nginx()),
                "{argument}"
            );
        }
    }

    #[test]
    fn dots_and_empty_are_refused_wherever_they_are() {
        for argument in [
            ".",
            "./",
            "..",
            "../..",
            "./system.slice",
            "system.slice/.",
            "system.slice/./nginx.service",
            "system.slice/..",
            "/sys/fs/cgroup/unified/system.slice/..",
        ] {
            for root in [RootCgroup::Refuse, RootCgroup::Allow] {
                assert!(
                    matches!(resolve(argument, root), Err(Refusal::Dots)),
                    "{argument}: {:?}",
                    resolve(argument, root)
                );
            }
        }
        assert!(matches!(
            resolve("", RootCgroup::Allow),
            Err(Refusal::Empty)
        ));
    }

    #[test]
    fn the_root_cgroup_needs_to_be_allowed() {
        let mount_slash = format!("{MOUNT}/");
        for argument in ["/", "//", MOUNT, &mount_slash, "/run/top"] {
            assert!(
                matches!(resolve(argument, RootCgroup::Refuse), Err(Refusal::Root)),
                "{argument}: {:?}",
                resolve(argument, RootCgroup::Refuse)
            );
            assert_eq!(
                resolve(argument, RootCgroup::Allow).ok(),
                Some(PathBuf::from(MOUNT)),
                "{argument}"
            );
        }
    }

    #[test]
    fn paths_outside_the_mount_are_named_with_the_mount() {
        let outside = resolve("/sys/fs/cgroup/cpu", RootCgroup::Allow).unwrap_err();
        assert_eq!(
            outside.message(Path::new(MOUNT), Path::new("/sys/fs/cgroup/cpu")),
            "/sys/fs/cgroup/cpu is not in the cgroup2 hierarchy mounted at \
             /sys/fs/cgroup/unified; give a path under it, or relative to it"
        );
        let link = resolve("/run/away", RootCgroup::Allow).unwrap_err();
        assert!(
            matches!(&link, Refusal::Outside { resolved } if resolved == Path::new("/tmp/outside"))
        );
        assert!(
            link.message(Path::new(MOUNT), Path::new("/run/away"))
                .starts_with("/run/away (which leads to /tmp/outside) is not in the cgroup2")
        );
    }

    #[test]
    fn missing_paths_are_reported_where_they_were_looked_for() {
        let missing = format!("{MOUNT}/no/such");
        for argument in ["no/such", "/no/such", &missing] {
            match resolve(argument, RootCgroup::Allow) {
                Err(Refusal::Missing { path, .. }) => assert_eq!(path, Path::new(&missing)),
                other => panic!("{argument}: {other:?}"),
            }
        }
        // Not under the mount, and the path itself cannot be looked up.
        assert!(matches!(
            resolve("/denied", RootCgroup::Allow),
            Err(Refusal::Unreadable { path, .. }) if path == Path::new("/denied")
        ));
    }

    #[test]
    fn every_message_is_one_line_naming_the_argument() {
        let mount = Path::new(MOUNT);
        for argument in [".", "/", "no/such", "/sys/fs/cgroup/cpu", "/run/away", ""] {
            let refusal = resolve(argument, RootCgroup::Refuse).unwrap_err();
            let message = refusal.message(mount, Path::new(argument));
            assert!(!message.contains('\n'), "{message}");
            assert!(message.contains(argument), "{message}");
        }
    }

    const NORMAL: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// As `ip netns exec blue cat /proc/self/mountinfo` shows it here.
    const NETNS_EXEC: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
48 45 0:39 / /sys rw,relatime - sysfs blue rw
";

    #[test]
    fn the_cgroup2_mount_is_found_in_mountinfo() {
        assert_eq!(
            mount_point_in(NORMAL),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            mount_point_in("1 2 0:1 / /a\\040b rw - cgroup2 none rw"),
            Some(PathBuf::from("/a b"))
        );
        assert_eq!(mount_point_in(NETNS_EXEC), None);
    }

    #[test]
    fn a_sys_remounted_by_ip_netns_exec_is_explained() {
        let named = no_cgroup2(NETNS_EXEC, |name| name == "blue");
        assert!(
            named.contains("`ip netns exec blue`")
                && named.contains("nsenter --net=/run/netns/blue keepalive"),
            "{named}"
        );
        let unnamed = no_cgroup2(NETNS_EXEC, |_| false);
        assert!(
            unnamed.contains("ip netns exec") && unnamed.contains("nsenter --net=/run/netns/NAME"),
            "{unnamed}"
        );
        // cgroup v1 only, /sys as booted: no guess about namespaces.
        let v1_only: String = NORMAL
            .lines()
            .filter(|l| !l.contains("cgroup2"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(
            no_cgroup2(&v1_only, |_| true),
            "no cgroup2 file system is mounted; cgroup mode needs the unified (v2) hierarchy"
        );
        assert!(!no_cgroup2("", |_| true).contains("netns"));
    }
}
