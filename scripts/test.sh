#!/usr/bin/env bash
# Runs every test of the project: installs what the tests need (Debian packages; as
# root) when something is missing, then `cargo test --workspace`. Extra arguments go
# to cargo test. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# The C compiler and binutils build and inspect the test programs; libkeepalive0 is
# the C library the compatibility test compares against; the rest are the real
# programs and network tools the end-to-end tests drive.
packages=(
    build-essential binutils python3 libkeepalive0
    iproute2 nftables tcpdump tshark netcat-openbsd socat redis-tools curl
    valgrind strace hyperfine
)

missing=()
for package in "${packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "scripts/test.sh: missing packages: ${missing[*]} (run as root to install them)" >&2
        [[ ${CI:-} == true ]] && exit 1
    else
        echo "scripts/test.sh: installing ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
fi

# Style and lints first: a formatting slip or a clippy warning fails the run before the
# (longer) tests start.
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

exec cargo test --workspace "$@"
