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
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")

# The library, and the command linked statically (scripts/build.sh says why).
[[ -n ${NO_BUILD:-} ]] || scripts/build.sh >/dev/null

install -d "$root/lib" "$root/bin" "$root/share/man/man1" \
    "$root/share/bash-completion/completions" "$root/share/zsh/site-functions" \
    "$root/share/fish/vendor_completions.d"
install -m 0755 "$target/release/libkeepalive.so" "$root/lib/libkeepalive.so"
ln -sf libkeepalive.so "$root/lib/libkeepalive.so.0"
install -m 0755 "$target/static/keepalive" "$root/bin/keepalive"

# Man pages and completions come from the command's own argument definitions.
"$target/static/keepalive" generate man "$root/share/man/man1"
"$target/static/keepalive" generate completions bash >"$root/share/bash-completion/completions/keepalive"
"$target/static/keepalive" generate completions zsh >"$root/share/zsh/site-functions/_keepalive"
"$target/static/keepalive" generate completions fish >"$root/share/fish/vendor_completions.d/keepalive.fish"

echo "installed libkeepalive and keepalive under ${DESTDIR:+$DESTDIR}$prefix"
