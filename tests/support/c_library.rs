//! Debian's C libkeepalive0 (0.3), for the tests that compare with it or replace it.
//! It is never installed for them: this project's package replaces it, and would take
//! /usr/lib/libkeepalive.so from it. Its package is downloaded (`apt-get download`,
//! which needs the package lists, as scripts/test.sh makes sure) and unpacked with
//! `dpkg-deb -x` into target/c-libkeepalive.

#![allow(dead_code)] // each test uses its own part of this module

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::support;

/// The directory the package is downloaded and unpacked in.
fn directory() -> PathBuf {
    support::target_dir().join("c-libkeepalive")
}

/// libkeepalive0's .deb, downloaded on first use; None (after `support::require`,
/// which fails under CI=true) when it cannot be had.
pub fn package() -> Option<&'static Path> {
    static PACKAGE: OnceLock<Option<PathBuf>> = OnceLock::new();
    PACKAGE
        .get_or_init(|| {
            let dir = directory();
            std::fs::create_dir_all(&dir).expect("create target/c-libkeepalive");
            let mut found = find_deb(&dir);
            let mut why = String::new();
            if found.is_none() {
                match Command::new("apt-get")
                    .args(["download", "-q", "libkeepalive0"])
                    .current_dir(&dir)
                    .output()
                {
                    Ok(output) => why = String::from_utf8_lossy(&output.stderr).into_owned(),
                    Err(error) => why = error.to_string(),
                }
                found = find_deb(&dir);
            }
            support::require(
                found.is_some(),
                &format!(
                    "`apt-get download libkeepalive0` failed (run apt-get update first): {}",
                    why.trim()
                ),
            )
            .then(|| found.expect("found"))
        })
        .as_deref()
}

fn find_deb(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("libkeepalive0_") && name.ends_with(".deb")
        })
}

/// The C library, unpacked from its package: .../usr/lib/libkeepalive.so.
pub fn library() -> Option<&'static Path> {
    static LIBRARY: OnceLock<Option<PathBuf>> = OnceLock::new();
    LIBRARY
        .get_or_init(|| {
            let deb = package()?;
            let root = directory().join("root");
            let library = root.join("usr/lib/libkeepalive.so");
            if !library.exists() {
                let status = Command::new("dpkg-deb")
                    .arg("-x")
                    .arg(deb)
                    .arg(&root)
                    .status()
                    .expect("dpkg-deb runs");
                assert!(status.success(), "dpkg-deb -x {} failed", deb.display());
            }
            assert!(
                library.exists(),
                "{} has no {}",
                deb.display(),
                library.display()
            );
            Some(library)
        })
        .as_deref()
}
