//! libkeepalive: preload it into a program and every TCP socket the program creates
//! gets TCP keepalive, with the timings given in the environment.
//!
//! ```text
//! LD_PRELOAD=/usr/lib/libkeepalive.so KEEPIDLE=60 KEEPINTVL=10 KEEPCNT=3 app
//! ```
//!
//! The layout follows the path of a call:
//! - [`interpose`]: the exported socket() and setsockopt();
//! - [`policy`]: pure decisions, which sockets and which option values;
//! - [`state`]: the configuration, read from the environment once per process
//!   (the parsing itself is the `keepalive-config` crate, shared with the command);
//! - [`logger`]: `libkeepalive:` lines on standard error;
//! - [`sys`]: the real functions behind ours, socket options and errno.
//!
//! The library is `no_std` and never unwinds: it adds no dependency but libc to the
//! programs it is loaded into, and nothing to their start-up time beyond one walk over
//! the environment.
#![cfg_attr(not(test), no_std)]
// Unit tests build the crate without exporting socket() and setsockopt(), so that the
// test binary does not interpose its own calls; the entry points are unused there.
#![cfg_attr(test, allow(dead_code))]

mod interpose;
mod logger;
mod policy;
mod state;
mod sys;

/// Reads the configuration (and reports bad values) while the program is starting,
/// before `main` can change its environment or its standard error. The real functions
/// are looked up by the first socket(): most processes never make one.
#[cfg(not(test))]
extern "C" fn on_load() {
    state::config();
}

#[cfg(not(test))]
#[used]
#[unsafe(link_section = ".init_array")]
static ON_LOAD: extern "C" fn() = on_load;

/// Nothing in the library is meant to panic; if something ever did, unwinding into
/// the host's C frames is not an option, so the process stops as abort() stops it.
#[cfg(not(test))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}
