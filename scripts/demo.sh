#!/usr/bin/env bash
# The library's job in half a minute: an unmodified client waits on a connection whose
# server vanishes without a word. Without the library it waits for good; with it, it
# finds out within the configured time. Runs as root or rootless, in a private network
# namespace (unshare) that disappears with the demo, so nothing on the host changes.
#
#   scripts/demo.sh            build the library (release) and run the demo
#   DEMO_WAIT=20 scripts/demo.sh   wait longer for the client without the library
set -euo pipefail

cd "$(dirname "$0")/.."
library="$PWD/target/release/libkeepalive.so"
port_without=7001
port_with=7002
give_up=${DEMO_WAIT:-12}

say() { printf '%s\n' "$*"; }

outside() {
    say "Building the library (cargo build --release)..."
    cargo build --release --quiet --lib -p libkeepalive
    for tool in unshare nft ss; do
        command -v "$tool" >/dev/null || { say "demo.sh needs $tool (packages util-linux, nftables, iproute2)"; exit 1; }
    done
    # As root a plain network namespace is enough; otherwise a user namespace maps
    # the caller to root inside it, which grants the network rights there only.
    local flags=-n
    (( EUID == 0 )) || flags=-rn
    exec unshare "$flags" -- "$0" --inside "$library"
}

# The client: socat reports why it stopped; nc is the fallback (it exits 0, silently).
client_command() {
    if command -v socat >/dev/null; then
        echo socat -u "TCP4:127.0.0.1:$1" STDOUT
    else
        echo nc -n 127.0.0.1 "$1"
    fi
}

pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$scratch"
}

now() { printf '%s' "${EPOCHREALTIME/[,]/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Polls `cond` (a command) every 50 ms for up to $1 seconds.
wait_for() {
    local limit=$1 start; shift
    start=$(now)
    until "$@"; do
        awk -v a="$start" -v b="$(now)" -v l="$limit" 'BEGIN { exit !(b - a > l) }' && return 1
        sleep 0.05
    done
}
listening() { ss -tlnH "sport = :$1" | grep -q .; }
established() { ss -tnH state established "dport = :$1" | grep -q .; }
running() { kill -0 "$1" 2>/dev/null; }
ended() { ! running "$1"; }

# The server's host vanishes: every packet to or from its port is dropped from now on,
# as if its power were cut. It sends no FIN and no RST; the client is told nothing.
vanish() {
    nft add rule inet demo input tcp dport "$1" drop
    nft add rule inet demo input tcp sport "$1" drop
}

# One round: a silent server, the client connected to it, the server vanishes.
# Prints the client's fate; $1 = port, $2 = "with" or "without".
round() {
    local port=$1 how=$2 server client start
    nc -d -l 127.0.0.1 "$port" >/dev/null 2>&1 &
    server=$!; pids+=("$server")
    wait_for 5 listening "$port" || { say "the server did not start"; exit 1; }
    if [[ $how == with ]]; then
        LD_PRELOAD=$library KEEPIDLE=1 KEEPINTVL=1 KEEPCNT=3 $(client_command "$port") >/dev/null 2>"$scratch/$how" &
    else
        $(client_command "$port") >/dev/null 2>"$scratch/$how" &
    fi
    client=$!; pids+=("$client")
    wait_for 5 established "$port" || { say "the client did not connect"; exit 1; }
    sleep 0.5
    vanish "$port"
    start=$(now)
    say "   $(date +%T) connected, idle; the server vanishes now."
    if [[ $how == with ]]; then
        if wait_for 15 ended "$client"; then
            local why
            why=$(tail -n 1 "$scratch/$how" | sed 's/.*: //')
            say "   $(date +%T) the client gave up after $(since "$start") s (${why:-it says nothing, but it exited})."
        else
            say "   still waiting after $(since "$start") s: the library did not help (a bug)"; exit 1
        fi
    else
        wait_for "$give_up" ended "$client" && { say "   the client stopped on its own, which should not happen"; exit 1; }
        say "   $(date +%T) still waiting after $(since "$start") s; the demo gives up on it."
        kill "$client"
    fi
}

inside() {
    library=$1
    scratch=$(mktemp -d)
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    ip link set lo up
    nft add table inet demo
    nft add chain inet demo input '{ type filter hook input priority 0; policy accept; }'
    read -r time intvl probes < <(cat /proc/sys/net/ipv4/tcp_keepalive_{time,intvl,probes} | paste -sd ' ')
    local client
    client=$(client_command PORT | cut -d' ' -f1)
    say ""
    say "A fresh network namespace; its kernel would probe an idle connection after ${time} s,"
    say "then every ${intvl} s, ${probes} times: over two hours to notice a vanished peer."
    say ""
    say "1. $client, unmodified, without the library:"
    round "$port_without" without
    say ""
    say "2. The same $client under the library: LD_PRELOAD=libkeepalive.so KEEPIDLE=1 KEEPINTVL=1 KEEPCNT=3"
    say "   (expected: 1 s idle + 3 probes 1 s apart = about 4 s)"
    round "$port_with" with
    say ""
    say "Kernel defaults unchanged: $(cat /proc/sys/net/ipv4/tcp_keepalive_{time,intvl,probes} | paste -sd /)."
}

if [[ ${1-} == --inside ]]; then
    inside "$2"
else
    outside
fi
