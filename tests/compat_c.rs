//! Drop-in compatibility: the same probe under Debian's C libkeepalive (0.3) and under
//! this library gives identical results for every configuration the C library
//! handles correctly. (Where it does not: raw sockets, which it wrongly touches, and
//! invalid values, which atoi bends; those are covered in tests/preload.rs.)
//! The C library is unpacked from Debian's package, not installed (support/c_library.rs).

#[path = "support/c_library.rs"]
mod c_library;
mod support;

use std::path::Path;

use support::{library, probe_sockets};

/// Every kind the C library handles correctly: all but raw sockets.
const KINDS: [&str; 16] = [
    "tcp4",
    "tcp6",
    "tcp4-proto",
    "tcp6-proto",
    "tcp4-cloexec",
    "tcp4-nonblock",
    "tcp6-both",
    "mptcp4",
    "mptcp6",
    "udp4",
    "udp6",
    "unix-stream",
    "unix-seqpacket",
    "unix-dgram",
    "bad-protocol",
    "bad-domain",
];

/// Configurations written for the C library: plain integers and KEEPALIVE=off.
const CONFIGURATIONS: [&[(&str, &str)]; 9] = [
    &[],
    &[("KEEPIDLE", "61"), ("KEEPINTVL", "7"), ("KEEPCNT", "4")],
    &[
        ("KEEPIDLE", "1"),
        ("KEEPINTVL", "32767"),
        ("KEEPCNT", "127"),
    ],
    &[("KEEPIDLE", "600")],
    &[("KEEPINTVL", "30")],
    &[("KEEPCNT", "5")],
    &[("KEEPALIVE", "off"), ("KEEPIDLE", "61")],
    &[("KEEPALIVE", "OFF")],
    &[("KEEPALIVE", "on"), ("KEEPIDLE", "120"), ("KEEPCNT", "2")],
];

fn c_library() -> Option<&'static Path> {
    c_library::library()
}

#[test]
fn same_results_as_the_c_library_for_every_configuration_it_handles() {
    let Some(c_library) = c_library() else { return };
    for env in CONFIGURATIONS {
        let (ours, our_stderr) = probe_sockets(Some(library()), env, &KINDS);
        let (theirs, _) = probe_sockets(Some(c_library), env, &KINDS);
        assert_eq!(ours.len(), KINDS.len());
        assert_eq!(ours, theirs, "under {env:?}");
        assert_eq!(
            our_stderr, "",
            "valid classic configuration {env:?} prints nothing"
        );
    }
}

#[test]
fn same_results_as_the_c_library_for_a_program_that_sets_its_own_keepalive() {
    let Some(c_library) = c_library() else { return };
    let args = [
        "--own-keepalive",
        "0",
        "--own-timings",
        "15,5,3",
        "tcp4",
        "tcp6",
        "udp4",
    ];
    for env in CONFIGURATIONS {
        let (ours, _) = probe_sockets(Some(library()), env, &args);
        let (theirs, _) = probe_sockets(Some(c_library), env, &args);
        assert_eq!(ours, theirs, "under {env:?}");
    }
}
