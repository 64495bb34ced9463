# Sourced by the scripts: checks, before a script does anything else, that the
# commands it needs are there. What is missing is installed from Debian's packages
# when the script runs as root, and named with the command that installs it when not.
#
#   . "$(dirname "$0")/needs.sh"
#   needs demo.sh cargo:rust ip:iproute2 python3:python3
#
# Each argument after the script's name is COMMAND:PACKAGE, or /FILE:PACKAGE for a
# package that brings no command (headers). PACKAGE "rust" is the
# Rust toolchain, which no Debian package provides in a version new enough: it is
# only named (install it with rustup), never installed.

# needs SCRIPT COMMAND:PACKAGE...
needs() {
    local script=$1 want command package
    shift
    local packages=() toolchain=()
    for want in "$@"; do
        command=${want%%:*} package=${want#*:}
        if [[ $command == /* ]]; then
            [[ -e $command ]] && continue # a file, such as a header, not a command
        else
            command -v "$command" >/dev/null 2>&1 && continue
        fi
        if [[ $package == rust ]]; then
            toolchain+=("$command")
        else
            [[ " ${packages[*]} " == *" $package "* ]] || packages+=("$package")
        fi
    done
    if ((${#toolchain[@]})); then
        echo "$script needs ${toolchain[*]}, from the Rust toolchain: install it with rustup" >&2
        exit 1
    fi
    ((${#packages[@]})) || return 0
    apt_install "$script" "${packages[@]}"
}

# apt_install SCRIPT PACKAGE...: installs the packages as root, or names them and exits.
apt_install() {
    local script=$1
    shift
    if ((EUID != 0)); then
        echo "$script needs the Debian packages $*: run it as root, or install them with" >&2
        echo "    sudo apt-get install $*" >&2
        exit 1
    fi
    echo "$script: installing $* (apt-get install)" >&2
    export DEBIAN_FRONTEND=noninteractive
    # A fresh machine may have no package lists yet; an old list may name files the
    # mirror no longer has. Update first when there are none, and when an install fails.
    compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null || apt-get update -q >&2
    without_service_starts apt-get install -y -q --no-install-recommends "$@" >&2 ||
        { apt-get update -q >&2 &&
            without_service_starts apt-get install -y -q --no-install-recommends "$@" >&2; }
}

# without_service_starts COMMAND...: runs COMMAND (an install) while maintainer
# scripts may not start services. The scripts want the programs, not the daemons some
# packages start when installed (prometheus starts its server on port 9090): a
# policy-rc.d that answers 101 ("action forbidden") stops invoke-rc.d and
# deb-systemd-invoke. One already in place (a container's) is left as it is; one
# made here is removed afterwards, also when COMMAND fails or is interrupted.
without_service_starts() {
    local policy=/usr/sbin/policy-rc.d
    if [[ -e $policy ]]; then
        "$@"
        return
    fi
    (
        trap 'rm -f "$policy"' EXIT
        trap 'exit 129' HUP
        trap 'exit 130' INT
        trap 'exit 143' TERM
        printf '#!/bin/sh\n# Made by libkeepalive scripts/needs.sh for one apt-get install.\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        "$@"
    )
}

# installed PACKAGE: whether dpkg holds the package as installed ("rc", removed but
# its configuration kept, is not).
installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

# What building the keepalive command needs besides Rust and a C compiler: its cgroup
# mode's BPF program is compiled by clang, with libbpf's and the kernel's headers.
BPF_BUILD_NEEDS=(clang:clang /usr/include/bpf/bpf_helpers.h:libbpf-dev
    "/usr/include/$(uname -m)-linux-gnu/asm/types.h:linux-libc-dev")
