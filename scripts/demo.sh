#!/usr/bin/env bash
# The library's job in half a minute: an unmodified client waits on a connection whose
# server vanishes without a word. Without the library it waits for good; with it, it
# finds out within the configured time. Runs as root or rootless, in private network
# namespaces (unshare) that disappear with the demo, so nothing on the host changes.
#
#   scripts/demo.sh                build the library (release) and run the demo
#   DEMO_WAIT=20 scripts/demo.sh   wait longer for the client without the library
#   DEMO_CLIENT=python3 scripts/demo.sh   choose the client: socat, nc or python3
#   KEEPALIVE_LIBRARY=/path/libkeepalive.so scripts/demo.sh   use a built library, build nothing
#
# Needs only what a fresh Debian machine with Rust has: cargo and a C compiler, bash,
# python3 (the server, and the client when neither socat nor nc is installed),
# iproute2 (ip, ss) and util-linux (unshare, nsenter, setpriv). It installs nothing.
#
# The server runs in a second network namespace joined to the client's by a veth
# pair; it vanishes when its end of the pair goes down: no FIN, no RST, nothing.
#
# It leaves nothing behind, however it ends: every process it starts is killed when
# it exits (a trap), or when it is killed itself (a parent-death signal), and its
# network namespaces have no name, so they go with their last process. A server left
# running would hold its namespace, and its port, for good.
set -euo pipefail

# A library named by a relative path is where the caller is, not where the demo goes.
[[ -z ${KEEPALIVE_LIBRARY:-} ]] || KEEPALIVE_LIBRARY=$(realpath -m -- "$KEEPALIVE_LIBRARY")
cd "$(dirname "$0")/.."
library=${KEEPALIVE_LIBRARY:-$(realpath -m "${CARGO_TARGET_DIR:-target}")/release/libkeepalive.so}
port=7001
give_up=${DEMO_WAIT:-12}
# The two hosts' addresses, only ever inside the demo's own namespaces.
client_address=10.214.0.1
server_address=10.214.0.2

say() { printf '%s\n' "$*"; }

outside() {
    . scripts/needs.sh
    needs demo.sh python3:python3 ip:iproute2 ss:iproute2 unshare:util-linux \
        nsenter:util-linux setpriv:util-linux awk:mawk
    if [[ -n ${KEEPALIVE_LIBRARY:-} ]]; then
        [[ -f $library ]] || { say "KEEPALIVE_LIBRARY=$library: no such file"; exit 1; }
    else
        needs demo.sh cargo:rust cc:build-essential
        say "Building the library (cargo build --release)..."
        cargo build --release --quiet --lib -p libkeepalive
    fi
    # pyenv's python3 is a script that starts other processes: run the interpreter
    # itself, so that only the client loads the library.
    local python
    python=$(python3 -c 'import sys; print(sys.executable)')
    # As root a plain network namespace is enough; otherwise a user namespace maps
    # the caller to root inside it, which grants the network rights there only.
    local flags=-n
    ((EUID == 0)) || flags=-rn
    exec unshare "$flags" -- "$0" --inside "$library" "$python"
}

# The client, by what is installed: socat says why it stopped; nc exits 0 and says
# nothing; python3 is always there and says why.
choose_client() {
    local name
    if [[ -n ${DEMO_CLIENT:-} ]]; then
        name=$DEMO_CLIENT
    elif command -v socat >/dev/null; then
        name=socat
    elif command -v nc >/dev/null; then
        name=nc
    else
        name=python3
    fi
    case $name in
        socat) client=(socat -u "TCP4:$server_address:$port" STDOUT) ;;
        nc) client=(nc -n "$server_address" "$port") ;;
        python3) client=("$python" -c '
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
try:
    s.recv(1)
    print("python3: the server closed the connection", file=sys.stderr)
except OSError as e:
    sys.exit(f"python3: recv: {e.strerror}")' "$server_address" "$port") ;;
        *) say "DEMO_CLIENT=$name: not a client the demo knows (socat, nc, python3)"; exit 2 ;;
    esac
    command -v "${client[0]}" >/dev/null || { say "DEMO_CLIENT=$name is not installed"; exit 1; }
    client_name=$name
}

# Every process the demo starts in the background is started as
#   "${dies_with_demo[@]}" COMMAND... &
# a simple command, so that the job ($!) is the process itself, not a subshell around
# it. The EXIT trap kills the jobs still running (`jobs -p`: a list of pids kept from
# the start could by then name other processes). If the demo is killed with SIGKILL,
# which no trap sees, the kernel sends them SIGKILL (setpriv's parent-death signal,
# kept across exec), so a silent server or a waiting client cannot outlive it.
dies_with_demo=(setpriv --pdeathsig KILL --)
cleanup() {
    local pid
    for pid in $(jobs -p); do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$scratch"
}

now() { printf '%s' "${EPOCHREALTIME/[,]/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Polls `cond` (a command) every 50 ms for up to $1 seconds.
wait_for() {
    local limit=$1 start
    shift
    start=$(now)
    until "$@"; do
        awk -v a="$start" -v b="$(now)" -v l="$limit" 'BEGIN { exit !(b - a > l) }' && return 1
        sleep 0.05
    done
}
in_server() { nsenter -t "$server_ns" -n "$@"; }
listening() { in_server ss -tlnH "sport = :$port" | grep -q .; }
established() { ss -tnH state established "dport = :$port" | grep -q .; }
running() { kill -0 "$1" 2>/dev/null; }
ended() { ! running "$1"; }
own_namespace() { [[ $(readlink "/proc/$1/ns/net") != "$(readlink /proc/$$/ns/net)" ]]; }

# The server's host: a network namespace of its own (held open by a sleeping
# process), joined to the client's by a veth pair. Permanent neighbour entries: no
# ARP is needed, so none can be lost or left failed between the two rounds.
server_host() {
    # No inherited output: a reader of the demo's output must see it end with the demo.
    "${dies_with_demo[@]}" unshare -n sleep 600 >/dev/null 2>&1 &
    server_ns=$!
    wait_for 5 own_namespace "$server_ns" ||
        { say "could not make the server's network namespace"; exit 1; }
    ip link add demo0 address 02:6b:62:00:00:01 type veth \
        peer name demo1 address 02:6b:62:00:00:02 netns "$server_ns"
    ip addr add "$client_address/24" dev demo0
    ip neigh replace "$server_address" lladdr 02:6b:62:00:00:02 dev demo0 nud permanent
    ip link set demo0 up
    in_server ip link set lo up
    in_server ip addr add "$server_address/24" dev demo1
    in_server ip neigh replace "$client_address" lladdr 02:6b:62:00:00:01 dev demo1 nud permanent
    in_server ip link set demo1 up
}

# The server's host goes away (its end of the wire goes dead) and takes the pair with it.
server_host_gone() {
    ip link del demo0
    kill "$server" "$server_ns" 2>/dev/null || true
    wait "$server" "$server_ns" 2>/dev/null || true
}

# One round: a silent server, the client connected to it, the server vanishes.
# Prints the client's fate; $1 = "with" or "without".
round() {
    local how=$1 client_pid start
    server_host
    # The server accepts and then says nothing, for ever. Started by nsenter itself, not
    # through in_server: a function run in the background is a subshell, and killing
    # that subshell would leave the server running.
    "${dies_with_demo[@]}" nsenter -t "$server_ns" -n "$python" -c '
import socket
s = socket.create_server(("0.0.0.0", '"$port"'))
c, _ = s.accept()
c.recv(1)' >/dev/null 2>"$scratch/server" &
    server=$!
    wait_for 5 listening || { say "the server (python3) did not start listening"; exit 1; }
    if [[ $how == with ]]; then
        "${dies_with_demo[@]}" env LD_PRELOAD="$library" KEEPIDLE=1 KEEPINTVL=1 KEEPCNT=3 \
            "${client[@]}" >/dev/null 2>"$scratch/$how" &
    else
        "${dies_with_demo[@]}" "${client[@]}" >/dev/null 2>"$scratch/$how" &
    fi
    client_pid=$!
    wait_for 5 established || { say "the client ($client_name) did not connect: $(cat "$scratch/$how")"; exit 1; }
    sleep 0.5
    # The server's host vanishes: its link goes down, as if its power were cut.
    in_server ip link set dev demo1 down
    start=$(now)
    say "   $(date +%T) connected, idle; the server vanishes now."
    if [[ $how == with ]]; then
        if wait_for 15 ended "$client_pid"; then
            local why
            why=$(tail -n 1 "$scratch/$how" | sed 's/.*: //')
            say "   $(date +%T) the client gave up after $(since "$start") s (${why:-it says nothing, but it exited})."
        else
            say "   still waiting after $(since "$start") s: the library did not help (a bug)"
            exit 1
        fi
    else
        wait_for "$give_up" ended "$client_pid" &&
            { say "   the client stopped on its own, which should not happen: $(cat "$scratch/$how")"; exit 1; }
        say "   $(date +%T) still waiting after $(since "$start") s; the demo gives up on it."
        kill "$client_pid"
    fi
    server_host_gone
}

inside() {
    library=$1 python=$2
    scratch=$(mktemp -d)
    # Interrupted (Ctrl-C, timeout(1), a closed terminal), the demo still exits
    # through cleanup.
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
    ip link set lo up
    choose_client
    local time intvl probes
    read -r time intvl probes < <(cat /proc/sys/net/ipv4/tcp_keepalive_{time,intvl,probes} | paste -sd ' ')
    say ""
    say "Client: $client_name (${client[0]})."
    say "A fresh network namespace; its kernel would probe an idle connection after ${time} s,"
    say "then every ${intvl} s, ${probes} times: over two hours to notice a vanished peer."
    say ""
    say "1. $client_name, unmodified, without the library:"
    round without
    say ""
    say "2. The same $client_name under the library: LD_PRELOAD=libkeepalive.so KEEPIDLE=1 KEEPINTVL=1 KEEPCNT=3"
    say "   (expected: 1 s idle + 3 probes 1 s apart = about 4 s)"
    round with
    say ""
    say "Kernel defaults unchanged: $(cat /proc/sys/net/ipv4/tcp_keepalive_{time,intvl,probes} | paste -sd /)."
}

if [[ ${1-} == --inside ]]; then
    inside "$2" "$3"
else
    outside
fi
