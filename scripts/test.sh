#!/usr/bin/env bash
# Runs every test of the project: installs what the tests need (Debian packages; as
# root) when something is missing, then `cargo test --workspace`. Extra arguments go
# to cargo test. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# The C compiler and binutils build and inspect the test programs; lintian checks the
# Debian package the tests build (scripts/package.sh, which installs cargo-deb); the
# rest are the real programs and network tools the end-to-end tests drive. Cgroup
# mode's BPF program is built with clang and the headers of libbpf-dev and
# linux-libc-dev; its tests build static (musl-tools), io_uring (liburing-dev) and Go
# (golang-go) clients, count loaded programs with bpftool and drop privileges with
# setpriv (util-linux). Debian's
# C libkeepalive0, which the compatibility test compares against, is not installed
# (our package replaces it): the tests download it and unpack it into target/.
packages=(
    build-essential binutils python3
    iproute2 nftables tcpdump tshark netcat-openbsd socat redis-tools curl
    valgrind strace lintian mmdebstrap
    clang libbpf-dev linux-libc-dev bpftool golang-go musl-tools liburing-dev util-linux
)

. scripts/needs.sh
missing=()
for package in "${packages[@]}"; do
    installed "$package" || missing+=("$package")
done
if ((${#missing[@]})); then
    if ((EUID != 0)); then
        echo "scripts/test.sh: missing packages: ${missing[*]}; run as root to install them, or:" >&2
        echo "    sudo apt-get install ${missing[*]}" >&2
        [[ ${CI:-} == true ]] && exit 1
    else
        apt_install scripts/test.sh "${missing[@]}"
    fi
fi
# The package lists, for `apt-get download libkeepalive0` in the tests.
if ((EUID == 0)) && ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
    apt-get update -q >&2
fi

# Style and lints first: a formatting slip or a clippy warning fails the run before the
# (longer) tests start.
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

exec cargo test --workspace "$@"
