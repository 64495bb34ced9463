#!/usr/bin/env bash
# What the library costs: per socket, per exec, in memory and in instructions, side by
# side with no library, with the floor (the program setting the options itself) and
# with Debian's C libkeepalive 0.3 (downloaded with `apt-get download libkeepalive0`
# and unpacked into target/bench, never installed; left out when that fails). Prints
# one table and writes it to bench/RESULTS.md, with a chart in bench/results.svg.
# Needs gcc, valgrind, strace, python3 and binutils; as root it installs those
# missing (Debian packages build-essential, valgrind, strace, python3).
#
#   scripts/bench.sh                  about 2 minutes on 2 cores
#   BENCH_ROUNDS=9 scripts/bench.sh   quicker, coarser (default 41 rounds)
#   BENCH_CPU=1 scripts/bench.sh     pin every measured process to CPU 1
#   BENCH_RESULTS=DIR scripts/bench.sh   write RESULTS.md and results.svg to DIR, not bench/
#
# Timings are noisy on a shared machine, so every round runs each variant once, in an
# order rotated from round to round (a slow minute hits all variants alike); the table
# gives the median and the range over the rounds. Instruction counts (callgrind) and
# system-call counts (strace) do not depend on the load and say what a gap is made of.
#
# It leaves nothing running: the processes it starts in the background (the connection
# server, the sleeping processes whose memory it reads) are killed when it exits, and
# by the kernel when it is killed itself (see dies_with_bench below).
#
# As root, one connection row runs in a cgroup attached with `keepalive cgroup attach`
# whose counting of dead connections is switched off (its on_error_link pin removed):
# against the `keepalive --cgroup` row, which counts, it measures what counting costs.
# Counting's program sits on a tracepoint of the whole machine for as long as its link
# exists, so no row may hold one outside its own runs: a run's link goes with it. A
# process of its own, the keeper, makes that cgroup and removes it (detach, rmdir)
# when the bench ends, also when the bench is killed with SIGKILL (see keeper below).
# Another row, also a `keepalive --cgroup` run (so its link too goes with its run),
# adds --rules with 16 rules, the one its connections match last: against the row
# without rules, it measures what matching rules costs (see write_rules below).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$ROOT/target/bench
ROUNDS=${BENCH_ROUNDS:-41}
SOCKET_BATCHES=${BENCH_SOCKET_BATCHES:-100} # a socket run: 100 batches of 100 sockets
EXECS=${BENCH_EXECS:-250}                   # an exec run: 250 starts of /bin/true
CONNECT_BATCHES=${BENCH_CONNECT_BATCHES:-20} # a connection run: 20 batches of 50 connections
KEEPALIVE=$OUT/keepalive                     # the command, for cgroup mode (as root)
KEEPER=                                      # the keeper's pid while it runs (as root)
ATTACHED=                                    # the attached row's cgroup prefix: $ATTACHED-uncounted
RULES=$OUT/rules.toml                        # the rules row's --rules FILE (write_rules)
# Copies: another build in the same tree must not swap the library in the middle.
LIB=$OUT/libkeepalive.so
EMPTY=$OUT/empty.so
# Not /usr/lib/libkeepalive.so: that is this project's library once its package is installed.
CLIB=$OUT/c-libkeepalive/usr/lib/libkeepalive.so
# The same timings everywhere; the programs of the floor set these values themselves.
TIMINGS=(KEEPIDLE=60 KEEPINTVL=10 KEEPCNT=3)
PIN=()
[[ -n ${BENCH_CPU:-} ]] && PIN=(taskset -c "$BENCH_CPU")
RESULTS=${BENCH_RESULTS:-$ROOT/bench}

. "$ROOT/scripts/needs.sh"
needs bench.sh cargo:rust gcc:build-essential readelf:binutils ldd:libc-bin valgrind:valgrind \
    strace:strace python3:python3 taskset:util-linux setpriv:util-linux git:git \
    "${BPF_BUILD_NEEDS[@]}"

# Every background process is started as `"${dies_with_bench[@]}" COMMAND... &`, a
# simple command (so that the job is the process itself, not a subshell around it).
# The EXIT trap kills the jobs still running: `jobs -p`, not a list of pids, which
# could by then name other processes (pid_max can be as low as 32768). If the script
# is killed with SIGKILL, which no trap sees, the kernel sends them SIGKILL (setpriv's
# parent-death signal, kept across exec).
dies_with_bench=(setpriv --pdeathsig KILL --)
stop_background() {
    local pid
    for pid in $(jobs -p); do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop_background EXIT
# Interrupted (Ctrl-C, timeout(1), a closed terminal), it still exits through the trap.
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# pyenv's python3 is a script that starts other processes: use the interpreter itself.
PYTHON=$(python3 -c 'import sys; print(sys.executable)')

build() {
    echo "building (release) ..." >&2
    # Two invocations, as in install.sh: cargo unifies features per invocation.
    (cd "$ROOT" && cargo build --release --quiet -p libkeepalive)
    (cd "$ROOT" && cargo build --release --quiet --bin keepalive -p keepalive-cli)
    mkdir -p "$OUT"
    rm -f "$OUT"/*.tsv "$OUT"/*.txt "$OUT"/*.json "$OUT"/callgrind.* "$OUT"/keeper "$RULES"
    cp "$ROOT/target/release/libkeepalive.so" "$LIB"
    cp "$ROOT/target/release/keepalive" "$KEEPALIVE"
    for program in socket_loop exec_loop connect_loop; do
        gcc -O2 -Wall -Wextra -o "$OUT/$program" "$ROOT/bench/$program.c"
    done
    gcc -O2 -shared -fPIC -o "$EMPTY" "$ROOT/bench/empty.c"
    fetch_c_library
}

# Debian's C libkeepalive0, unpacked from its package (installing it would take the
# place of this project's package, which replaces it).
fetch_c_library() {
    [[ -e $CLIB ]] && return
    local dir=$OUT/c-libkeepalive
    rm -rf "$dir" && mkdir -p "$dir"
    if (cd "$dir" && apt-get download -q libkeepalive0 >/dev/null 2>&1) &&
        dpkg-deb -x "$dir"/libkeepalive0_*.deb "$dir"; then
        echo "C libkeepalive: $(basename "$dir"/libkeepalive0_*.deb)" >&2
    else
        echo "C libkeepalive: apt-get download libkeepalive0 failed; the table leaves it out" >&2
    fi
}

# id | group | label | preload (none, empty, lib, clib; as root cgroup, uncounted, rules) | environment | command | expected
# `expected` is what the kernel must report for a socket made in the run (socket
# variants) and makes sure the library was loaded and did its work.
# The rules row runs with other timings than its expected ones: those come from its
# last rule (write_rules), so a run whose connections matched no rule, or another one,
# fails the check rather than passing with the command's own settings.
write_variants() {
    local t="${TIMINGS[*]}" own="keepalive=1 idle=60 intvl=10 cnt=3"
    local other="KEEPIDLE=120 KEEPINTVL=20 KEEPCNT=5"
    {
        echo "s_bare|socket|a. TCP, no library|none|$t|socket_loop tcp|keepalive=0"
        echo "s_floor|socket|b. TCP, program sets the 4 options (floor)|none|$t|socket_loop tcp-own|$own"
        echo "s_lib|socket|c. TCP, this library|lib|$t|socket_loop tcp|$own"
        echo "s_clib|socket|d. TCP, C libkeepalive 0.3|clib|$t|socket_loop tcp|$own"
        echo "s_force|socket|TCP, program sets 4 options, this library with KEEPALIVE=force|lib|KEEPALIVE=force KEEPIDLE=120 KEEPINTVL=20 KEEPCNT=5|socket_loop tcp-own|keepalive=1 idle=120 intvl=20 cnt=5"
        echo "s_other_bare|socket|UDP + AF_UNIX, no library|none|$t|socket_loop other|keepalive=0"
        echo "s_other_lib|socket|UDP + AF_UNIX, this library|lib|$t|socket_loop other|keepalive=0"
        echo "s_other_clib|socket|UDP + AF_UNIX, C libkeepalive 0.3|clib|$t|socket_loop other|keepalive=0"
        echo "e_bare|exec|/bin/true, no library|none|$t|exec_loop|"
        echo "e_empty|exec|/bin/true, an empty library (floor of preloading)|empty|$t|exec_loop|"
        echo "e_lib|exec|/bin/true, this library|lib|$t|exec_loop|"
        echo "e_clib|exec|/bin/true, C libkeepalive 0.3|clib|$t|exec_loop|"
        echo "c_bare|connect|a. connection, no keepalive|none|$t|connect_loop tcp|keepalive=0"
        echo "c_floor|connect|b. connection, program sets the 4 options (floor)|none|$t|connect_loop tcp-own|$own"
        echo "c_lib|connect|c. connection, this library (preload mode)|lib|$t|connect_loop tcp|$own"
        echo "c_cgroup|connect|d. connection, cgroup mode (keepalive --cgroup)|cgroup|$t|connect_loop tcp|$own"
        echo "c_uncounted|connect|e. connection, cgroup mode attached, dead connections not counted|uncounted|$t|connect_loop tcp|$own"
        echo "c_rules|connect|f. connection, cgroup mode with 16 rules, the matching one last (keepalive --cgroup --rules FILE)|rules|$other|connect_loop tcp|$own"
    } | if [[ -e $CLIB ]]; then cat; else grep -v '|clib|'; fi |
        if ((EUID == 0)); then cat; else grep -Ev '\|(cgroup|uncounted|rules)\|'; fi >"$OUT/variants.tsv"
    ((EUID == 0)) || echo "bench.sh: not root, so no cgroup-mode row (it loads BPF programs)" >&2
}

# Arguments of `env` for a variant, in ENV_ARGS: none of the caller's variables that
# the libraries read, then the variant's own.
env_args() { # preload environment
    local words
    read -ra words <<<"$2"
    ENV_ARGS=(-u LD_PRELOAD -u KEEPALIVE -u KEEPIDLE -u KEEPINTVL -u KEEPCNT
        -u KEEPALIVE_USER_TIMEOUT -u KEEPALIVE_LOG)
    case $1 in
        empty) ENV_ARGS+=("LD_PRELOAD=$EMPTY") ;;
        lib) ENV_ARGS+=("LD_PRELOAD=$LIB") ;;
        clib) ENV_ARGS+=("LD_PRELOAD=$CLIB") ;;
    esac
    ENV_ARGS+=("${words[@]}")
}

with_env() { # preload environment command...
    env_args "$1" "$2"
    shift 2
    env "${ENV_ARGS[@]}" "$@"
}

# The command line of a timed run of a variant.
timed_command() { # command
    case $1 in
        "socket_loop "*) echo "$OUT/$1 $SOCKET_BATCHES 100" ;;
        exec_loop) echo "$OUT/exec_loop $EXECS /bin/true" ;;
        "connect_loop "*) echo "$OUT/$1 $(cat "$OUT/port") $CONNECT_BATCHES 50" ;;
    esac
}

# The server every connection run connects to: outside any library or cgroup, so that
# only the connecting side differs between variants.
start_server() {
    rm -f "$OUT/port"
    "${dies_with_bench[@]}" "$OUT/connect_loop" serve "$OUT/port" &
    local try
    for ((try = 0; try < 100; try++)); do
        [[ -s $OUT/port ]] && return
        sleep 0.05
    done
    echo "the connection server did not start" >&2
    exit 1
}

# The rules row's --rules FILE, once the server's port is known: 16 rules of one peer
# CIDR and one port each, so that each puts one prefix in the peer trie and one in the
# port trie the BPF program looks a new connection up in. Rules 1-15 match none of
# the bench's connections (other peers, other ports) and name no settings; rule 16,
# loopback and the server's port, matches them all and gives the timings the row
# expects (TIMINGS), which its own environment does not. Last, because a program
# that tried the rules in turn would pay most for it; this one pays two trie lookups
# whatever the number.
write_rules() {
    grep -q '|rules|' "$OUT/variants.tsv" || return 0
    local n
    {
        for ((n = 1; n <= 15; n++)); do
            printf '[[rule]]\npeer = "10.%d.0.0/16"\nport = %d\n\n' "$n" $((1000 + n))
        done
        printf '[[rule]]\npeer = "127.0.0.1/32"\nport = %d\nidle = 60\ninterval = 10\ncount = 3\n' \
            "$(cat "$OUT/port")"
    } >"$RULES"
}

# The attached row's cgroup is named with this prefix (-uncounted): below the bench's
# own cgroup, named with its pid.
attached_prefix() {
    local mount own
    # mountinfo: the file system's type is the first field after " - ".
    mount=$(awk '{ for (i = 7; i < NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2") { print $5; exit } break } }' \
        /proc/self/mountinfo)
    own=$(sed -n 's/^0:://p' /proc/self/cgroup)
    [[ -n $mount && -n $own ]] || { echo "bench.sh: no cgroup2 mount, or no cgroup2 path in /proc/self/cgroup" >&2; exit 1; }
    echo "$mount${own%/}/keepalive-bench-$$"
}

# The keeper, run by start_keeper in a bash of its own (these functions are handed to
# it with declare -f), in the environment of the variants (so the attachment has
# their timings): makes the cgroup, attaches keepalive to it, switches counting off by
# removing its on_error_link pin (which releases the link: everything else stays the
# same), says "ready" in OUT/keeper, and waits. On SIGTERM it
# undoes it (keeper_undo). SIGTERM comes from stop_keeper after the rounds, from
# stop_background when the bench exits any other way (an error, INT, TERM, HUP), and
# from the kernel when the bench dies of a signal no trap sees (SIGKILL): that is the
# keeper's parent-death signal. A SIGTERM that comes during an attach waits until the
# attach is done (bash runs traps between commands), so none is left half made. Only
# SIGKILL sent to the keeper itself leaves the cgroups and their pins behind; the next
# `keepalive cgroup attach` or `detach` removes the pins of removed cgroups, not of
# cgroups that still exist: then `keepalive cgroup detach DIR` and rmdir DIR by hand
# (`keepalive cgroup status` lists them).
keeper() { # bench-pid out-dir keepalive prefix
    local bench=$1 out=$2 keepalive=$3 uncounted=$4-uncounted link sleeper=
    trap '' HUP INT # the bench sees these, and stops the keeper
    trap 'trap "" TERM; [[ -z $sleeper ]] || kill "$sleeper"; keeper_undo "$keepalive" "$uncounted"; exit 0' TERM
    # A parent-death signal asked for once the parent is gone never comes; nothing is made yet.
    [[ $PPID == "$bench" ]] || exit 1
    if mkdir "$uncounted" &&
        "$keepalive" cgroup attach "$uncounted" >/dev/null &&
        link=/sys/fs/bpf/keepalive/$(stat -c %i "$uncounted")/on_error_link &&
        rm "$link" && [[ ! -e $link ]]; then
        echo ready >"$out/keeper"
    else
        echo failed >"$out/keeper"
        keeper_undo "$keepalive" "$uncounted"
        exit 1
    fi
    setpriv --pdeathsig KILL -- sleep infinity &
    sleeper=$!
    wait "$sleeper"
    # Not stopped, yet the sleeper ended (killed by someone else): undo now, so that
    # the next attached row fails loudly rather than the cgroup staying.
    keeper_undo "$keepalive" "$uncounted"
    exit 1
}

# What the keeper undoes: the attachments and the cgroups. A timed run still in a
# cgroup when the bench was killed ends within a second or two; rmdir waits for it.
keeper_undo() { # keepalive cgroup...
    local keepalive=$1 dir try
    shift
    for dir; do
        [[ -d $dir ]] || continue
        [[ ! -d /sys/fs/bpf/keepalive/$(stat -c %i "$dir") ]] ||
            "$keepalive" cgroup detach "$dir" >/dev/null || true
        for ((try = 0; try < 100; try++)); do
            rmdir "$dir" 2>/dev/null && break
            sleep 0.1
        done
        [[ ! -d $dir ]] || echo "bench.sh: cannot remove $dir" >&2
    done
}

# Starts the keeper (as root, for the attached rows) and waits until it is ready.
start_keeper() {
    grep -q '|uncounted|' "$OUT/variants.tsv" || return 0
    env_args none "${TIMINGS[*]}"
    setpriv --pdeathsig TERM -- env "${ENV_ARGS[@]}" "$BASH" -c \
        "$(declare -f keeper keeper_undo); keeper \"\$@\"" keeper $$ "$OUT" "$KEEPALIVE" "$ATTACHED" &
    KEEPER=$!
    until [[ -s $OUT/keeper ]]; do
        kill -0 "$KEEPER" 2>/dev/null || break
        sleep 0.05
    done
    if [[ $(cat "$OUT/keeper" 2>/dev/null) != ready ]]; then
        echo "bench.sh: could not attach keepalive to $ATTACHED-uncounted" >&2
        exit 1
    fi
    check_counting_off
}

# Removing the pin must have released the link (the kernel frees it a moment later):
# the attachment's on_error program is on no tracepoint. Checked where bpftool is.
check_counting_off() {
    command -v bpftool >/dev/null || return 0
    local id try
    id=$(bpftool -j prog show pinned "$(pins uncounted)/on_error" | sed -n 's/^{"id":\([0-9]*\),.*/\1/p')
    [[ -n $id ]] || { echo "bench.sh: no on_error program pinned in $(pins uncounted)" >&2; exit 1; }
    for ((try = 0; try < 50; try++)); do
        linked "$id" || return 0
        sleep 0.02
    done
    echo "bench.sh: removing $(pins uncounted)/on_error_link left its program (id $id) on the tracepoint" >&2
    exit 1
}

# Whether a BPF link holds program $1.
linked() { [[ $(bpftool -j link show) =~ \"prog_id\":$1[,}] ]]; }

# Stops the keeper, which detaches and removes the cgroup.
stop_keeper() {
    [[ -n $KEEPER ]] || return 0
    kill "$KEEPER"
    wait "$KEEPER" || true
    KEEPER=
}

# The pin directory of the attached row's cgroup (uncounted).
pins() { echo "/sys/fs/bpf/keepalive/$(stat -c %i "$ATTACHED-$1")"; }

# Every variant once per round, starting one further down the list each round.
run_rounds() {
    mapfile -t variants <"$OUT/variants.tsv"
    local n=${#variants[@]} round i
    for ((round = 0; round < ROUNDS; round++)); do
        printf '\rround %d/%d' $((round + 1)) "$ROUNDS" >&2
        for ((i = 0; i < n; i++)); do
            IFS='|' read -r id _ _ preload environment command expected <<<"${variants[(round + i) % n]}"
            local output
            read -ra cmd <<<"$(timed_command "$command")"
            case $preload in
                # Cgroup mode: the same program, run in a cgroup with the BPF programs,
                cgroup) cmd=("$KEEPALIVE" --cgroup -- "${cmd[@]}") ;;
                # the same with rules,
                rules) cmd=("$KEEPALIVE" --cgroup --rules "$RULES" -- "${cmd[@]}") ;;
                # or moved (before it execs) into a cgroup the keeper attached.
                uncounted)
                    cmd=(sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh
                        "$ATTACHED-$preload" "${cmd[@]}") ;;
            esac
            output=$(with_env "$preload" "$environment" "${PIN[@]}" "${cmd[@]}" 2>&1)
            if [[ $output != ns=* || $output != *"$expected"* ]]; then
                echo >&2
                echo "variant $id: expected ns=... $expected, got: $output" >&2
                exit 1
            fi
            local ns=${output#ns=}
            printf '%s\t%s\n' "$id" "${ns%% *}" >>"$OUT/samples.tsv"
            [[ $output != *faults=* ]] || printf '%s\tfaults\t%s\n' "$id" "${output##*faults=}" >>"$OUT/faults.tsv"
        done
    done
    echo >&2
}

# The library must announce itself when loaded with logging on: a run that silently
# failed to preload would otherwise look free.
check_library_loads() {
    local log
    log=$(with_env lib "KEEPALIVE_LOG=info" /bin/true 2>&1)
    [[ $log == *libkeepalive* ]] || { echo "the library did not load: $log" >&2; exit 1; }
}

# Instructions per operation, counted by callgrind in user space (the kernel's share is
# the same in every variant with the same system calls, which strace counts). Per socket:
# the difference between 3000 and 1000 iterations, divided by 2000, so start-up and
# exit do not count. Per exec: one whole start of /bin/true.
count_instructions() {
    echo "counting instructions (callgrind) and system calls (strace) ..." >&2
    local id group preload environment command n file
    while IFS='|' read -r id group _ preload environment command _; do
        # A connection's cost is in the kernel, which callgrind does not see.
        [[ $group != connect ]] || continue
        if [[ $group == socket ]]; then
            for n in 1000 3000; do
                file=$OUT/callgrind.$id.$n
                with_env "$preload" "$environment" valgrind --tool=callgrind \
                    --callgrind-out-file="$file" "$OUT/${command%% *}" "${command#* }" untimed $n 2>/dev/null
                printf '%s\tir%s\t%s\n' "$id" $n "$(sed -n 's/^summary: //p' "$file")" >>"$OUT/counts.tsv"
                count_syscalls "$id" "$n" "$preload" "$environment" "$OUT/${command%% *}" "${command#* }" untimed $n
            done
        else
            file=$OUT/callgrind.$id
            with_env "$preload" "$environment" valgrind --tool=callgrind \
                --callgrind-out-file="$file" /bin/true 2>/dev/null
            printf '%s\tir\t%s\n' "$id" "$(sed -n 's/^summary: //p' "$file")" >>"$OUT/counts.tsv"
            count_syscalls "$id" 1 "$preload" "$environment" /bin/true
        fi
    done <"$OUT/variants.tsv"
}

# System calls of a socket run, by name (strace -c), as "syscall-NAME<n> count" lines.
count_syscalls() { # id n preload environment command...
    local id=$1 n=$2 preload=$3 environment=$4
    shift 4
    local vars=()
    case $preload in
        empty) vars=(-E "LD_PRELOAD=$EMPTY") ;;
        lib) vars=(-E "LD_PRELOAD=$LIB") ;;
        clib) vars=(-E "LD_PRELOAD=$CLIB") ;;
    esac
    with_env none "$environment" strace -qq -c -U name,calls -o "$OUT/strace.txt" "${vars[@]}" "$@" >/dev/null
    awk -v id="$id" -v n="$n" '$1 ~ /^[a-z_0-9]+$/ && $2 ~ /^[0-9]+$/ && $1 != "total" {
        printf "%s\tsys_%s%s\t%s\n", id, $1, n, $2 }' "$OUT/strace.txt" >>"$OUT/counts.tsv"
}

# Memory a sleeping /bin/sleep uses (smaps_rollup), with and without a library, and
# the library's size and dependencies.
measure_footprint() {
    echo "measuring memory and size ..." >&2
    local preload pid sample
    # Three samples of each, interleaved: report.py takes the median.
    for sample in 1 2 3; do for preload in none empty lib clib; do
        [[ $preload == clib && ! -e $CLIB ]] && continue
        env_args "$preload" "${TIMINGS[*]}"
        "${dies_with_bench[@]}" env "${ENV_ARGS[@]}" sleep 30 &
        pid=$!
        wait_for_exec "$pid" "$preload"
        awk -v p="$preload" '/^(Rss|Pss|Private_Clean|Private_Dirty):/ { printf "%s\t%s\t%s\n", p, $1, $2 }' \
            "/proc/$pid/smaps_rollup" >>"$OUT/memory.tsv"
        kill "$pid"
        wait "$pid" 2>/dev/null || true
    done; done
    {
        printf 'size_empty\t%s\n' "$(stat -c %s "$EMPTY")"
        printf 'load_empty\t%s\n' "$(load_size "$EMPTY")"
        printf 'deps_empty\t%s\n' "$(dependencies "$EMPTY")"
        printf 'size_lib\t%s\n' "$(stat -c %s "$LIB")"
        printf 'load_lib\t%s\n' "$(load_size "$LIB")"
        printf 'deps_lib\t%s\n' "$(dependencies "$LIB")"
        if [[ -e $CLIB ]]; then
            printf 'size_clib\t%s\n' "$(stat -c %s "$(readlink -f "$CLIB")")"
            printf 'load_clib\t%s\n' "$(load_size "$CLIB")"
            printf 'deps_clib\t%s\n' "$(dependencies "$CLIB")"
        fi
    } >>"$OUT/facts.tsv"
}

# The libraries a library needs at run time, as ldd names them.
dependencies() {
    ldd "$1" | awk '/statically linked/ { print "none"; next } { print $1 }' | paste -sd ' '
}

# Bytes of the library's loadable segments (memory size of its PT_LOAD headers).
load_size() {
    local size total=0
    while read -r size; do
        total=$((total + size))
    done < <(readelf -lW "$1" | awk '$1 == "LOAD" { print $6 }')
    echo "$total"
}

# Waits until the process runs /bin/sleep with libc mapped (and the preloaded library,
# which must be there: a footprint of a library that was not loaded would be nothing).
wait_for_exec() { # pid preload
    local library="" try
    case $2 in empty) library=$EMPTY ;; lib) library=$LIB ;; clib) library=$(readlink -f "$CLIB") ;; esac
    for ((try = 0; try < 200; try++)); do
        if grep -q 'libc\.so' "/proc/$1/maps" 2>/dev/null && [[ $(readlink "/proc/$1/exe") == */sleep ]]; then
            [[ -z $library ]] || grep -qF "$library" "/proc/$1/maps" ||
                { echo "$library is not mapped in the sleeping process" >&2; exit 1; }
            sleep 0.2  # let it finish starting before reading its memory
            return
        fi
        sleep 0.01
    done
    echo "sleep did not start" >&2
    exit 1
}

describe_machine() {
    {
        printf 'cpu\t%s\n' "$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
        printf 'cores\t%s\n' "$(nproc)"
        printf 'kernel\t%s\n' "$(uname -r)"
        printf 'libc\t%s\n' "$(ldd --version | head -1 | sed 's/^ldd //')"
        printf 'os\t%s\n' "$(. /etc/os-release && echo "$PRETTY_NAME")"
        printf 'rustc\t%s\n' "$(rustc --version)"
        printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
        printf 'commit\t%s\n' "$(git -C "$ROOT" describe --always --dirty)"
        printf 'rounds\t%s\n' "$ROUNDS"
        printf 'socket_run\t%s\n' "$((SOCKET_BATCHES * 100))"
        printf 'exec_run\t%s\n' "$EXECS"
        printf 'connect_run\t%s\n' "$((CONNECT_BATCHES * 50))"
        printf 'pinned\t%s\n' "${BENCH_CPU:-no}"
        printf 'load\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
    } >"$OUT/facts.tsv"
}

build
write_variants
check_library_loads
describe_machine
if ((EUID == 0)); then ATTACHED=$(attached_prefix); fi
start_keeper
start_server
write_rules
run_rounds
stop_keeper
count_instructions
measure_footprint
mkdir -p "$RESULTS"
"$PYTHON" "$ROOT/bench/report.py" "$OUT" "$RESULTS"
