#!/usr/bin/env bash
# Builds TARGET/debian/tunnelctl_VERSION-1_ARCH.deb with cargo-deb (TARGET: cargo's
# target directory, target/ unless CARGO_TARGET_DIR or build.target-dir says otherwise):
# release binaries, man pages and completions written by the binary itself
# (`tunnelctl generate`), and the example configuration.
# Prints the path of the .deb on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=packaging/cargo-target-dir.sh
source packaging/cargo-target-dir.sh
target=$(cargo_target_dir)

CARGO_DEB_VERSION=3.8.0   # pinned: the package layout is checked against this one

# cargo-deb computes the libc6 dependency with dpkg-shlibdeps; without it the package
# would silently depend on openssh-client only.
command -v dpkg-shlibdeps >/dev/null || { echo "build-deb: dpkg-shlibdeps is missing: apt-get install dpkg-dev" >&2; exit 1; }

if ! cargo deb --version 2>/dev/null | grep -qx "cargo-deb $CARGO_DEB_VERSION"; then
  echo "build-deb: installing cargo-deb $CARGO_DEB_VERSION (about a minute)" >&2
  cargo install --locked --quiet cargo-deb --version "$CARGO_DEB_VERSION" >&2
fi

version=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="tunnelctl"))')
changelog_version=$(sed -n '1s/^tunnelctl (\([^)-]*\)-[^)]*).*/\1/p' packaging/debian/changelog)
if [ "$version" != "$changelog_version" ]; then
  echo "build-deb: Cargo.toml says $version but packaging/debian/changelog's first entry is $changelog_version; add a changelog entry" >&2
  exit 1
fi

cargo build --release --locked >&2
# The watchdog ships with glibc linked in (Cargo.toml, profile release-static): about
# 1 MiB less resident memory per tunnel. `-C target-feature=+crt-static` after `--`
# reaches only this binary.
cargo rustc --profile release-static --locked --bin tunnel-watchdog -- -C target-feature=+crt-static >&2
# A static glibc that resolves names loads the NSS modules of /etc/nsswitch.conf with
# dlopen, safe only with the glibc it was built with; the watchdog must not contain that
# code (names go through getent: src/watchdog/reachability.rs, `addresses`).
static_watchdog=$target/release-static/tunnel-watchdog
if grep -aq /etc/nsswitch.conf "$static_watchdog"; then
  echo "build-deb: the static tunnel-watchdog links glibc's NSS (getaddrinfo, getpwnam, ...); resolve through reachability::addresses instead" >&2
  exit 1
fi
# cargo-deb maps an asset path starting with target/release/ to the real target
# directory (CARGO_TARGET_DIR included), but not target/release-static/: the package's
# watchdog goes in under a name there (Cargo.toml, package.metadata.deb assets).
cp "$static_watchdog" "$target/release/tunnel-watchdog.crt-static"
generated=packaging/generated
rm -rf "$generated"
cargo run --release --locked --quiet --bin tunnelctl -- generate man "$generated/man" >&2
cargo run --release --locked --quiet --bin tunnelctl -- generate completions "$generated/completions" >&2

# --no-build: the binaries above are the ones the pages were generated from.
# cargo-deb prints the path of the package it wrote on stdout.
deb=$(cargo deb --no-build --locked)
echo "$deb"
