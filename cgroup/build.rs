//! Compiles the kernel side, bpf/keepalive.bpf.c, into a BPF object that the crate
//! embeds, and turns the layout both sides share (bpf/keepalive.h) into Rust
//! constants (layout.rs) by compiling and running bpf/layout.c. Needs clang, and the
//! headers of libbpf-dev and linux-libc-dev.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const SOURCE: &str = "bpf/keepalive.bpf.c";
const HEADER: &str = "bpf/keepalive.h";
const LAYOUT: &str = "bpf/layout.c";
const PACKAGES: &str = "clang, libbpf-dev and linux-libc-dev (apt-get install clang libbpf-dev linux-libc-dev, or run scripts/test.sh as root)";

fn main() {
    for file in [SOURCE, HEADER, LAYOUT] {
        println!("cargo:rerun-if-changed={file}");
    }
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let object = out.join("keepalive.bpf.o");
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".into());
    // asm/types.h lives in the multiarch include directory, which -target bpf does
    // not search by itself.
    let multiarch = format!(
        "-I/usr/include/{}-linux-gnu",
        env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into())
    );
    let result = Command::new(&clang)
        .args([
            "-target", "bpf", "-O2", "-g", "-Wall", "-Werror", &multiarch, "-c", SOURCE, "-o",
        ])
        .arg(&object)
        .status();
    match result {
        Ok(status) if status.success() => {}
        Ok(status) => panic!(
            "{clang} could not compile {SOURCE} ({status}); it needs the packages {PACKAGES}"
        ),
        Err(error) => panic!(
            "cannot run {clang} to compile {SOURCE}: {error}; cgroup mode needs the packages {PACKAGES}"
        ),
    }
    write_layout(&clang, &out);
}

/// Compiles bpf/layout.c for this machine and writes what it prints to layout.rs.
fn write_layout(clang: &str, out: &std::path::Path) {
    let program = out.join("layout");
    let status = Command::new(clang)
        .args([LAYOUT, "-o"])
        .arg(&program)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {clang} to compile {LAYOUT}: {e}"));
    assert!(
        status.success(),
        "{clang} could not compile {LAYOUT} ({status})"
    );
    let output = Command::new(&program)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    assert!(output.status.success(), "{} failed", program.display());
    std::fs::write(out.join("layout.rs"), output.stdout).expect("write layout.rs");
}
