#!/usr/bin/env bash
# Fuzzes the configuration parser (fuzz/fuzz_targets/config.rs) for SECONDS seconds
# (default 60) with cargo-fuzz on nightly Rust; exits non-zero on any crash.
#
#   scripts/fuzz.sh 300
#
# Needs: rustup's nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# The corpus is kept in fuzz/corpus/config between runs; crashes land in
# fuzz/artifacts/config.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
# Checked first: neither can be installed from Debian's packages.
cargo +nightly --version >/dev/null 2>&1 ||
    { echo "fuzz.sh needs nightly Rust: rustup toolchain install nightly" >&2; exit 1; }
cargo +nightly fuzz --help >/dev/null 2>&1 ||
    { echo "fuzz.sh needs cargo-fuzz: cargo install cargo-fuzz" >&2; exit 1; }
seconds="${1:-60}"
mkdir -p corpus/config
# Seeds: valid values and near misses of every kind the grammar knows.
printf '60\0005m\0003\0001h30m\0auto\0debug' >corpus/config/seed-valid
printf 'force\0+5\0 6 0\0\xff\0001m1m\0warning' >corpus/config/seed-invalid
exec cargo +nightly fuzz run config corpus/config -- -max_total_time="$seconds" -max_len=4096 -print_final_stats=1
