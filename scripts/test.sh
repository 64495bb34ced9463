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
# setpriv (util-linux). The agent's tests scrape its metrics with a Prometheus server
# and lint them with promtool (prometheus); tests/manifests.rs checks the systemd unit
# with systemd-analyze (systemd) and the Kubernetes examples with kubernetes-validate,
# installed below in a virtual environment (python3-venv). Debian's
# C libkeepalive0, which the compatibility test compares against, is not installed
# (our package replaces it): the tests download it and unpack it into target/.
packages=(
    build-essential binutils python3 python3-venv
    iproute2 nftables tcpdump tshark netcat-openbsd socat redis-tools curl
    valgrind strace lintian mmdebstrap systemd prometheus
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
        # The tests run Prometheus servers of their own. apt_install kept the
        # package's from starting (unless a policy-rc.d of the machine's let it:
        # then it is stopped), and it must not start at the next boot either.
        if [[ " ${missing[*]} " == *" prometheus "* ]]; then
            now=()
            [[ -d /run/systemd/system ]] && now=(--now)
            systemctl disable --quiet "${now[@]}" prometheus.service >&2
        fi
    fi
fi

# kubernetes-validate, from PyPI (Debian has no package), with the Kubernetes API
# schemas it bundles, so that it checks offline: the pinned version, in a virtual
# environment of its own, which leaves Debian's Python packages alone (pip refuses to
# install into them, PEP 668). tests/manifests.rs looks for it there.
KUBERNETES_VALIDATE_VERSION=1.37.0
validator=/var/cache/libkeepalive/kubernetes-validate
if [[ $("$validator/bin/kubernetes-validate" --version 2>/dev/null) != "$KUBERNETES_VALIDATE_VERSION" ]]; then
    if ((EUID != 0)); then
        echo "scripts/test.sh: kubernetes-validate $KUBERNETES_VALIDATE_VERSION is not in $validator; run as root to install it" >&2
        [[ ${CI:-} == true ]] && exit 1
    else
        echo "scripts/test.sh: installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION in $validator (pip)" >&2
        /usr/bin/python3 -m venv --clear "$validator" >&2
        "$validator/bin/pip" install --quiet --disable-pip-version-check \
            "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" >&2
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
