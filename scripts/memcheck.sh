#!/usr/bin/env bash
# Runs the probe (tests/support/probe.c) under valgrind memcheck with the library
# preloaded and every variable set, at debug logging, on every kind of socket it
# knows: exits non-zero on any memory error or leak.
#
#   scripts/memcheck.sh
#
# KEEPALIVE_LIBRARY and KEEPALIVE_PROBE name an already built library and probe
# (the tests pass theirs); otherwise both are built here.
# Needs valgrind and a C compiler: as root it installs those missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/needs.sh
needs memcheck.sh valgrind:valgrind cc:build-essential
[[ -n ${KEEPALIVE_LIBRARY:-} ]] || needs memcheck.sh cargo:rust

library="${KEEPALIVE_LIBRARY:-}"
if [[ -z "$library" ]]; then
    cargo build --release --quiet --lib -p libkeepalive
    library="$PWD/target/release/libkeepalive.so"
fi
probe="${KEEPALIVE_PROBE:-}"
if [[ -z "$probe" ]]; then
    mkdir -p target/test-programs
    probe=target/test-programs/probe-memcheck
    cc -O2 -g -Wall -Wextra -o "$probe" tests/support/probe.c
fi

kinds=(tcp4 tcp6 tcp4-proto tcp6-proto tcp4-cloexec tcp4-nonblock tcp6-both mptcp4 mptcp6
       udp4 udp6 raw4 unix-stream unix-seqpacket unix-dgram bad-protocol bad-domain)

# run VAR=VALUE... -- PROBE-ARGS...
run() {
    local vars=()
    while [[ "$1" != -- ]]; do vars+=("$1"); shift; done
    shift
    echo "memcheck: ${vars[*]} probe $*" >&2
    local log status=0
    log=$(env LD_PRELOAD="$library" KEEPALIVE_LOG=debug KEEPINTVL=7 KEEPCNT=4 "${vars[@]}" \
        valgrind --quiet --error-exitcode=99 --leak-check=full --show-leak-kinds=all \
        --errors-for-leak-kinds=all --track-origins=yes "$probe" "$@" 2>&1 >/dev/null) || status=$?
    grep -v '^libkeepalive: ' <<<"$log" >&2 || true
    # Proof that the library was loaded into the program valgrind ran.
    if ! grep -q '^libkeepalive: ' <<<"$log"; then
        echo "memcheck: the library wrote nothing: was it loaded?" >&2
        return 98
    fi
    return "$status"
}

# Configured and refused values, force with the program's own calls, auto user timeout.
run KEEPIDLE=61 KEEPALIVE_USER_TIMEOUT=auto -- "${kinds[@]}"
run KEEPIDLE=bad KEEPALIVE=force -- --own-keepalive 0 --own-timings 5,5,5 --own-user-timeout 9 "${kinds[@]}"
run KEEPIDLE=$'\xff' KEEPALIVE=off KEEPALIVE_USER_TIMEOUT= -- "${kinds[@]}"
echo "memcheck: ERROR SUMMARY: 0 errors, no leaks" >&2
