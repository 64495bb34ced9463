//! Cgroup mode: TCP keepalive for every TCP connection of the processes in a cgroup,
//! set by a BPF program (bpf/keepalive.bpf.c) instead of a preloaded library, so that
//! it reaches Go, static and musl programs, io_uring sockets and setuid programs.
//!
//! - [`RunCgroup`]: the child cgroup of one `keepalive --cgroup -- COMMAND` run,
//!   removed with its programs when dropped;
//! - [`attach`], [`detach`], [`status`], [`pin`]: programs that outlive the command.
//!
//! Both take the same [`keepalive_config::Config`] as preload mode, translated by
//! [`settings`] into what the kernel side reads.

/// The layout both sides share, generated from bpf/keepalive.h by build.rs.
#[allow(dead_code)] // every constant is generated; not all are read on this side
pub mod layout {
    include!(concat!(env!("OUT_DIR"), "/layout.rs"));
}

mod cgroupfs;
mod hooks;
mod persistent;
mod preflight;
mod programs;
mod rule_maps;
mod rule_store;
pub mod rules;
mod run;
pub mod settings;

use std::fmt;
use std::io;

pub use cgroupfs::{RootCgroup, id as cgroup_id, mount_point as cgroup2_mount};
pub use persistent::{
    Attachment, Details, attach, attached_here, claims, detach, pin, record_existing, status,
};
pub use preflight::MIN_KERNEL_TEXT;
pub use programs::Claims;
pub use run::RunCgroup;

/// Why cgroup mode could not be set up, in words for the user, with the system's
/// error when there was one (shown after the words, and kept for callers to test).
#[derive(Debug)]
pub struct Error {
    message: String,
    source: Option<io::Error>,
}

impl Error {
    fn new(message: impl Into<String>) -> Error {
        Error {
            message: message.into(),
            source: None,
        }
    }

    /// `context: error`, where `context` says what was being done to what.
    fn os(context: impl Into<String>, source: io::Error) -> Error {
        Error {
            message: context.into(),
            source: Some(source),
        }
    }

    /// The errno of the system call that failed, if that is what this is.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.source.as_ref().and_then(io::Error::raw_os_error)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

/// An error and every error under it, as one line: aya's errors say which call
/// failed and keep why (the errno) one level down.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        next = cause.source();
    }
    text
}
