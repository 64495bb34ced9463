//! `keepalive [OPTIONS] -- COMMAND`: find the library, set its variables, and replace
//! this process with COMMAND, so that no process is left in between and signals and
//! the exit status pass through untouched.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use keepalive_config::{UserTimeout, Var};

use crate::args::RunArgs;
use crate::exit::{self, describe};
use crate::reach;

/// The library's file name, as installed and as cargo builds it.
const LIBRARY_FILE: &str = "libkeepalive.so";

/// Runs COMMAND under the library. Returns only on failure, with the exit status.
pub fn run(args: RunArgs) -> i32 {
    if let Some(option) = args.filters.first_given().or(args.rules.given()) {
        eprintln!(
            "keepalive: {option} needs --cgroup: the preloaded library acts in socket(), \
             before any address or port is known"
        );
        return exit::BAD_USAGE;
    }
    let library = match find_library() {
        Ok(library) => library,
        Err(message) => {
            eprintln!("keepalive: {message}");
            return exit::OWN_FAILURE;
        }
    };
    log::info!("library: {}", library.display());
    let Some((program, rest)) = args.command.split_first() else {
        eprintln!("keepalive: no COMMAND to run");
        return exit::OWN_FAILURE;
    };
    if let Some((path, why)) = reach::check(program) {
        eprintln!(
            "keepalive: warning: {} {}: the preloaded library cannot reach it; \
             run it with `keepalive --cgroup` instead",
            path.display(),
            why.describe()
        );
    }
    let mut command = Command::new(program);
    command.args(rest);
    for (name, value) in variables(&args) {
        log::info!("{name}={value}");
        command.env(name, value);
    }
    let preload = preload_with(
        library.as_os_str(),
        std::env::var_os("LD_PRELOAD").as_deref(),
    );
    log::info!("LD_PRELOAD={}", preload.to_string_lossy());
    command.env("LD_PRELOAD", preload);
    let error = command.exec();
    eprintln!(
        "keepalive: {}: {}",
        program.to_string_lossy(),
        describe(&error)
    );
    exit::for_exec_error(&error)
}

/// The library's variables for the options given; options not given leave the
/// caller's environment as it is. Values are passed in their plain form (seconds,
/// milliseconds), which the library reads exactly as the command did.
fn variables(args: &RunArgs) -> Vec<(&'static str, String)> {
    let t = &args.timings;
    let mut vars = Vec::new();
    let mut put = |var: Var, value: Option<String>| {
        if let Some(value) = value {
            vars.push((var.name(), value));
        }
    };
    put(Var::Mode, args.mode.map(|m| m.as_str().to_string()));
    put(Var::Idle, t.idle.map(|s| s.to_string()));
    put(Var::Interval, t.interval.map(|s| s.to_string()));
    put(Var::Count, t.count.map(|n| n.to_string()));
    put(Var::UserTimeout, t.user_timeout.map(user_timeout_word));
    put(Var::Log, args.log.map(|l| l.as_str().to_string()));
    vars
}

pub fn user_timeout_word(timeout: UserTimeout) -> String {
    match timeout {
        UserTimeout::Off => "off".into(),
        UserTimeout::Auto => "auto".into(),
        UserTimeout::Millis(ms) => ms.to_string(),
    }
}

/// LD_PRELOAD with the library first and whatever the caller preloads kept after it.
/// The dynamic loader splits the list on colons and spaces; a list that already
/// names the library is left as it is.
pub fn preload_with(library: &OsStr, existing: Option<&OsStr>) -> OsString {
    let existing = existing.map(OsStr::as_bytes).unwrap_or_default();
    let already = existing
        .split(|&b| b == b':' || b == b' ')
        .any(|entry| entry == library.as_bytes());
    if already {
        return OsStr::from_bytes(existing).to_owned();
    }
    let mut list = library.to_owned();
    if !existing.iter().all(|&b| b == b':' || b == b' ') {
        list.push(":");
        list.push(OsStr::from_bytes(existing));
    }
    list
}

/// Where the library is: $KEEPALIVE_LIBRARY when set (and then only there), else next
/// to this executable, else in the lib directories of its installation prefix, else
/// where the package, install.sh and the Docker recipe put it.
fn find_library() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("KEEPALIVE_LIBRARY").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return usable(&path).map_err(|why| format!("KEEPALIVE_LIBRARY={}: {why}", path.display()));
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate this command: {e}"))?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let candidates = candidates(dir);
    for candidate in &candidates {
        log::debug!("looking for the library at {}", candidate.display());
        if let Ok(found) = usable(candidate) {
            return Ok(found);
        }
    }
    let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    Err(format!(
        "cannot find {LIBRARY_FILE}; looked in {}; set KEEPALIVE_LIBRARY to its path",
        tried.join(", ")
    ))
}

/// The places to look, in order: beside the command and in its prefix first, so that
/// a copy of both files anywhere uses its own library; then the system's places, so
/// that a command copied alone (a static build, into any image) finds an installed
/// library.
fn candidates(dir: &Path) -> Vec<PathBuf> {
    let multiarch = format!("{}-linux-gnu", std::env::consts::ARCH);
    let prefixes = [
        dir.to_path_buf(),
        dir.join("../lib"),
        dir.join("../lib").join(&multiarch),
        dir.join("../lib64"),
    ];
    let system = [
        Path::new("/usr/local/lib").to_path_buf(),
        Path::new("/usr/lib").join(&multiarch),
        Path::new("/usr/lib").to_path_buf(),
        Path::new("/usr/lib64").to_path_buf(),
    ];
    prefixes
        .into_iter()
        .chain(system)
        .map(|dir| dir.join(LIBRARY_FILE))
        .collect()
}

/// The absolute, resolved path of a library file that exists, and that LD_PRELOAD
/// can carry (it splits on colons and spaces).
///
/// Only the directory is resolved: the file keeps the name it was found under, so
/// that the link a package installs (libkeepalive.so → libkeepalive.so.0.4.0) is
/// what LD_PRELOAD names, and a long-running COMMAND's children still find the
/// library after an upgrade replaces the file it points to.
fn usable(path: &Path) -> Result<PathBuf, String> {
    let name = path.file_name().ok_or("not a file")?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let resolved = dir.canonicalize().map_err(|e| describe(&e))?.join(name);
    if !resolved.is_file() {
        return Err(match resolved.metadata() {
            Err(e) => describe(&e),
            Ok(_) => "not a file".into(),
        });
    }
    if resolved
        .as_os_str()
        .as_bytes()
        .iter()
        .any(|&b| b == b':' || b == b' ')
    {
        return Err(format!(
            "{}: LD_PRELOAD cannot carry a path with ':' or ' '",
            resolved.display()
        ));
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preload(existing: Option<&str>) -> String {
        preload_with(OsStr::new("/l/libkeepalive.so"), existing.map(OsStr::new))
            .into_string()
            .unwrap()
    }

    #[test]
    fn the_library_goes_first_and_the_rest_is_kept() {
        assert_eq!(preload(None), "/l/libkeepalive.so");
        assert_eq!(preload(Some("")), "/l/libkeepalive.so");
        assert_eq!(preload(Some("a.so")), "/l/libkeepalive.so:a.so");
        assert_eq!(preload(Some("a.so b.so")), "/l/libkeepalive.so:a.so b.so");
    }

    #[test]
    fn a_list_that_already_has_the_library_is_unchanged() {
        assert_eq!(
            preload(Some("a.so /l/libkeepalive.so")),
            "a.so /l/libkeepalive.so"
        );
    }
}
