//! Gives the library the soname of Debian's libkeepalive0, so that it can stand in
//! for the C library wherever that one is installed or named.

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libkeepalive.so.0");
    println!("cargo:rerun-if-changed=build.rs");
}
