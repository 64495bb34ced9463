#!/usr/bin/env bash
# Builds the two files that are shipped, as they are shipped:
#   target/release/libkeepalive.so      the library (needs nothing but a C library:
#                                       glibc 2.17 or later, or musl)
#   target/static/keepalive             the command, statically linked: it runs on any
#                                       Linux userland of this architecture, whatever
#                                       its C library (Debian 11, RHEL 8, Alpine,
#                                       distroless), since it loads nothing at all
# and prints their paths, one per line. scripts/install.sh and scripts/package.sh use
# it; NO_BUILD=1 there skips it.
#
# The command is linked against glibc's static libc (target feature crt-static). It
# calls nothing that needs NSS or dlopen at run time (no user, group or host name
# lookups), which is what makes a static glibc program safe to copy anywhere; the
# tests check that it runs in a root that holds nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/needs.sh
needs build.sh cargo:rust rustc:rust cc:build-essential "${BPF_BUILD_NEEDS[@]}"

target_dir=$(realpath -m "${CARGO_TARGET_DIR:-target}")
# crt-static must not reach the library (a cdylib) nor build scripts: naming the host
# target explicitly makes RUSTFLAGS apply to the target's crates only, in their own
# directory, target/<host>/.
host=$(rustc -vV | sed -n 's/^host: //p')

# Two invocations: built together, the command's dependencies would turn on log's std
# feature in the no_std library (cargo unifies features per invocation).
cargo build --release --quiet --lib -p libkeepalive >&2
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --release --quiet --bin keepalive -p keepalive-cli --target "$host" >&2

install -d "$target_dir/static"
install -m 0755 "$target_dir/$host/release/keepalive" "$target_dir/static/keepalive"
echo "$target_dir/release/libkeepalive.so"
echo "$target_dir/static/keepalive"
