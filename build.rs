//! Gives the library the soname of Debian's libkeepalive0, so that it can stand in
//! for the C library wherever that one is installed or named; links it without the C
//! start files; and links it against a version-free stand-in for libc.so.6.
//!
//! - Without the start files: their crtbeginS.o brings four symbols (__cxa_finalize,
//!   __gmon_start__ and the two transactional-memory hooks) that the dynamic loader
//!   would look up in every process at start, for a library with no C++ destructors,
//!   no profiling and no transactional memory. Its constructor is an .init_array
//!   entry, which the loader runs without them.
//! - Against build/libc-stub.c, built as libc.so.6 (see there): the real libc.so.6
//!   would bind each import to the version of the glibc it was built on (dlsym to
//!   GLIBC_2.34 here), which an older glibc refuses at load; and with no libc.so.6
//!   named at all, a program without a C library (a Go binary built as PIE) would
//!   stop at start on the first import.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const STUB: &str = "build/libc-stub.c";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={STUB}");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libkeepalive.so.0");
    println!("cargo:rustc-cdylib-link-arg=-nostartfiles");
    let stub = build_stub();
    println!("cargo:rustc-cdylib-link-arg={}", stub.display());
}

/// Builds build/libc-stub.c as a shared object named libc.so.6, with the C compiler
/// cargo links with.
fn build_stub() -> PathBuf {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let dir = out.join("libc-stub");
    std::fs::create_dir_all(&dir).expect("create OUT_DIR/libc-stub");
    let stub = dir.join("libc.so.6");
    let cc = env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args([
            "-shared",
            "-nostdlib",
            "-fPIC",
            "-O2",
            "-Wl,-soname,libc.so.6",
            "-o",
        ])
        .arg(&stub)
        .arg(STUB)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run the C compiler {cc} for {STUB}: {e} (apt-get install build-essential)"
            )
        });
    assert!(status.success(), "{cc} could not build {STUB} ({status})");
    stub
}
