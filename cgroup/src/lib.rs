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

mod cgroupfs;
mod hooks;
mod persistent;
mod preflight;
mod programs;
mod run;
pub mod settings;

use std::fmt;

pub use persistent::{Attachment, attach, detach, pin, status};
pub use preflight::MIN_KERNEL_TEXT;
pub use run::RunCgroup;

/// Why cgroup mode could not be set up, in words for the user.
#[derive(Debug)]
pub struct Error(String);

impl Error {
    fn new(message: impl Into<String>) -> Error {
        Error(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}
