#!/usr/bin/env bash
# Builds the Debian package (amd64) with cargo-deb, from [package.metadata.deb] in
# Cargo.toml, and checks it with lintian (no errors allowed):
#
#   scripts/package.sh        prints the path of the .deb, under target/debian/
#
# Installs cargo-deb (the pinned version, with `cargo install --locked`) when it is
# missing, and, as root, the Debian packages it needs (dpkg-dev, lintian); as another
# user it names them with the command that installs them.
#
#   sudo dpkg -i target/debian/libkeepalive_*.deb    # replaces libkeepalive0 if installed
#   sudo dpkg --purge libkeepalive                   # leaves nothing behind
set -euo pipefail
cd "$(dirname "$0")/.."

# cargo-deb 3.8.0 builds with Rust 1.85 and later; pinned so that every machine
# builds the same package.
CARGO_DEB_VERSION=3.8.0

. scripts/needs.sh
needs package.sh cargo:rust cc:build-essential dpkg-shlibdeps:dpkg-dev lintian:lintian "${BPF_BUILD_NEEDS[@]}"
if [[ $(cargo deb --version 2>/dev/null) != "cargo-deb $CARGO_DEB_VERSION" ]]; then
    echo "package.sh: installing cargo-deb $CARGO_DEB_VERSION (cargo install --locked)" >&2
    cargo install --quiet --locked --version "$CARGO_DEB_VERSION" cargo-deb >&2
fi
[[ $(dpkg --print-architecture) == amd64 ]] ||
    { echo "package.sh: the package's paths are amd64's (x86_64-linux-gnu)" >&2; exit 1; }

# The library, and the command linked statically (scripts/build.sh says why); the
# asset paths in Cargo.toml name target/release and target/static.
scripts/build.sh >/dev/null
target="${CARGO_TARGET_DIR:-target}/release"
command="${CARGO_TARGET_DIR:-target}/static/keepalive"

# Man pages and completions come from the command's own argument definitions; the
# asset paths in Cargo.toml name this directory.
assets=target/deb-assets
rm -rf "$assets"
mkdir -p "$assets"
# The name Cargo.toml's assets give the library: libkeepalive.so.VERSION.
strip --strip-unneeded -o "$assets/libkeepalive.so.0.4.0" "$target/libkeepalive.so"
# cargo-deb strips only what it built itself, and the command comes from build.sh.
strip -o "$assets/keepalive" "$command"
"$command" generate man "$assets/man"
"$command" generate completions bash >"$assets/keepalive.bash"
"$command" generate completions zsh >"$assets/_keepalive"
"$command" generate completions fish >"$assets/keepalive.fish"

deb=$(cargo deb --no-build --quiet -p libkeepalive)
[[ -f $deb ]] || { echo "package.sh: cargo deb made no package ($deb)" >&2; exit 1; }

# The shlibs control file every Debian shared library carries (libkeepalive0 had one
# too), which cargo-deb has no setting for: added to the package cargo-deb made, whose
# files and other control files stay as they are.
version=$(dpkg-deb -f "$deb" Version)
# The version is written out in Cargo.toml's Provides and library name and in
# debian/changelog: a release that forgets one of them stops here.
upstream=${version%-*}
[[ $(dpkg-deb -f "$deb" Provides) == "libkeepalive0 (= $upstream)" ]] &&
    dpkg-deb -c "$deb" | grep "libkeepalive\.so\.$upstream\$" >/dev/null &&
    [[ $(head -n 1 debian/changelog) == "libkeepalive ($version) "* ]] ||
    { echo "package.sh: version $version is not the one in Cargo.toml's Provides, library name or debian/changelog" >&2; exit 1; }
rm -rf "$assets/tree"
dpkg-deb -R "$deb" "$assets/tree"
echo "libkeepalive 0 libkeepalive (>= $upstream)" >"$assets/tree/DEBIAN/shlibs"
dpkg-deb --root-owner-group -Zxz -b "$assets/tree" "$deb" >/dev/null
rm -rf "$assets/tree"

# lintian: errors fail the build; warnings and the rest are shown.
lintian --fail-on error "$deb" >&2
echo "$deb"
