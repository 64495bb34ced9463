//! Gives the library the soname of Debian's libkeepalive0, so that it can stand in
//! for the C library wherever that one is installed or named, and links it without
//! the C start files: their crtbeginS.o brings four symbols (__cxa_finalize,
//! __gmon_start__ and the two transactional-memory hooks) that the dynamic loader would
//! look up in every process at start, for a library with no C++ destructors, no
//! profiling and no transactional memory. Its constructor is an .init_array entry,
//! which the loader runs without them.

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libkeepalive.so.0");
    println!("cargo:rustc-cdylib-link-arg=-nostartfiles");
    println!("cargo:rerun-if-changed=build.rs");
}
