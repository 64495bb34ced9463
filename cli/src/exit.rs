//! The exit statuses of `keepalive [--cgroup] -- COMMAND`, in one place for both modes:
//! keepalive's own failures, a COMMAND that cannot run, and COMMAND's own status,
//! as env(1), nice(1), timeout(1) and shells report them.

use std::io;

/// A bad option or option value, as clap exits for one: nothing was done.
pub const BAD_USAGE: i32 = 2;
/// keepalive itself failed (bad setup, refused privileges): COMMAND never ran.
pub const OWN_FAILURE: i32 = 125;
/// COMMAND exists but cannot be executed (permissions, not an executable).
pub const CANNOT_EXECUTE: i32 = 126;
/// COMMAND was not found.
pub const NOT_FOUND: i32 = 127;

/// The status for a failed exec of COMMAND: 127 when it does not exist, 126 when it
/// exists but cannot be run.
pub fn for_exec_error(error: &io::Error) -> i32 {
    match error.kind() {
        io::ErrorKind::NotFound => NOT_FOUND,
        _ => CANNOT_EXECUTE,
    }
}

/// The status that passes COMMAND's end on: its exit code, or 128 + N when signal N
/// killed it, as shells report it.
pub fn of_command(code: Option<i32>, signal: Option<i32>) -> i32 {
    match (code, signal) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => OWN_FAILURE,
    }
}

/// An error's message without Rust's " (os error N)" suffix, as other tools print it.
pub fn describe(error: &io::Error) -> String {
    let text = error.to_string();
    match text.find(" (os error") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_errors_map_to_126_and_127() {
        let missing = io::Error::from_raw_os_error(libc::ENOENT);
        let denied = io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(for_exec_error(&missing), 127);
        assert_eq!(for_exec_error(&denied), 126);
        assert_eq!(describe(&missing), "No such file or directory");
    }

    #[test]
    fn a_signal_becomes_128_plus_its_number() {
        assert_eq!(of_command(Some(7), None), 7);
        assert_eq!(of_command(None, Some(15)), 143);
        assert_eq!(of_command(None, None), OWN_FAILURE);
    }
}
