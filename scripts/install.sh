#!/usr/bin/env bash
# Builds and installs libkeepalive and the keepalive command:
#   PREFIX/lib/libkeepalive.so (+ libkeepalive.so.0, its soname), PREFIX/bin/keepalive,
#   man pages in PREFIX/share/man/man1, bash, zsh and fish completions.
# PREFIX defaults to /usr/local; DESTDIR stages the tree elsewhere (packaging, CI).
# The command finds the library through ../lib relative to itself, so the installed
# tree works wherever it is put. Set NO_BUILD=1 to install what is already built.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix="${PREFIX:-/usr/local}"
root="${DESTDIR:-}${prefix}"
target="${CARGO_TARGET_DIR:-target}/release"

if [[ -z ${NO_BUILD:-} ]]; then
    . scripts/needs.sh
    needs install.sh cargo:rust cc:build-essential "${BPF_BUILD_NEEDS[@]}"
    # Two invocations: built together, the command's dependencies would turn on log's
    # std feature in the no_std library (cargo unifies features per invocation).
    cargo build --release --lib -p libkeepalive
    cargo build --release --bin keepalive -p keepalive-cli
fi

install -d "$root/lib" "$root/bin" "$root/share/man/man1" \
    "$root/share/bash-completion/completions" "$root/share/zsh/site-functions" \
    "$root/share/fish/vendor_completions.d"
install -m 0755 "$target/libkeepalive.so" "$root/lib/libkeepalive.so"
ln -sf libkeepalive.so "$root/lib/libkeepalive.so.0"
install -m 0755 "$target/keepalive" "$root/bin/keepalive"

# Man pages and completions come from the command's own argument definitions.
"$target/keepalive" generate man "$root/share/man/man1"
"$target/keepalive" generate completions bash >"$root/share/bash-completion/completions/keepalive"
"$target/keepalive" generate completions zsh >"$root/share/zsh/site-functions/_keepalive"
"$target/keepalive" generate completions fish >"$root/share/fish/vendor_completions.d/keepalive.fish"

echo "installed libkeepalive and keepalive under ${DESTDIR:+$DESTDIR}$prefix"
