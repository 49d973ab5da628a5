#!/usr/bin/env bash
# What a router user copies: the static build of packaging/cross-build.sh as an archive,
# and for OpenWrt's mipsel and aarch64 package architectures an .ipk.
#
#   bash packaging/router-package.sh TARGET [OUTDIR]
#
# Writes into OUTDIR (default TARGET_DIR/cross/dist):
#   tunnelctl-VERSION-TARGET.tar.gz   bin/tunnelctl, bin/tunnel-watchdog, man/ (written by
#                                     the foreign tunnelctl's `generate man`, under QEMU),
#                                     tunnels.yaml.example, README (the OpenWrt
#                                     architectures it fits, where things go)
#   tunnelctl_VERSION-1_ARCH.ipk      mipsel-unknown-linux-musl (mipsel_24kc) and
#                                     aarch64-unknown-linux-musl (aarch64_cortex-a53) only
# The .ipk is laid out as OpenWrt's ipkg-build makes one (a gzip'd tar of debian-binary,
# data.tar.gz, control.tar.gz); Debian has no opkg to try it with, so
# tests/it/router_package.rs checks that layout and the control fields instead. It
# holds /usr/bin/tunnelctl, /usr/bin/tunnel-watchdog and
# /etc/tunnelctl/tunnels.yaml.example, depends on openssh-client (Dropbear's client lacks
# what the watchdog needs), and has no maintainer script: installing starts nothing.
# The last line of output is OUTDIR. Needs qemu-user (for the man pages), tar, gzip.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# shellcheck source=packaging/cargo-target-dir.sh
source "$repo/packaging/cargo-target-dir.sh"
fail() { echo "router-package: $*" >&2; exit 1; }

target=${1:-}
[[ -n $target && $target != -* ]] || { sed -n '2,20p' "$0"; exit 2; }
# Per target: the emulator that runs it here, the OpenWrt package architecture (.ipk
# only for those two) and the OpenWrt architectures the archive fits.
ipk_arch=''
case "$target" in
    mipsel-unknown-linux-musl) qemu=qemu-mipsel ipk_arch=mipsel_24kc
        fits="mipsel_24kc (ramips: mt7620, mt7621, mt76x8; other little-endian MIPS32r2 boards)" ;;
    mips-unknown-linux-gnu) qemu=qemu-mips ipk_arch=''
        fits="mips_24kc (ath79 and other big-endian MIPS32r2 boards; glibc linked statically, see below)" ;;
    armv7-unknown-linux-musleabihf) qemu=qemu-arm ipk_arch=''
        fits="arm_cortex-a7_neon-vfpv4 (ipq40xx, bcm2709 / Raspberry Pi 2), and other ARMv7 with a hardware FPU: arm_cortex-a9_vfpv3-d16 (mvebu), arm_cortex-a15_neon-vfpv4" ;;
    aarch64-unknown-linux-musl) qemu=qemu-aarch64 ipk_arch=aarch64_cortex-a53
        fits="aarch64_cortex-a53 (mediatek/filogic, mvebu/cortexa53, bcm27xx/bcm2710 / Raspberry Pi 3), aarch64_cortex-a72 (bcm2711 / Raspberry Pi 4), aarch64_generic" ;;
    *) # cross-build.sh names the ones it knows.
        bash packaging/cross-build.sh "$target" >/dev/null; exit 2 ;;
esac
command -v "$qemu" >/dev/null || fail "$qemu is missing: install the Debian package qemu-user"

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
[[ -n $version ]] || fail "no version in Cargo.toml"
out_dir=${2:-$(cargo_target_dir "$repo")/cross/dist}
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)
bins=$(bash packaging/cross-build.sh "$target" | tail -n1)
[[ -x $bins/tunnelctl && -x $bins/tunnel-watchdog ]] || fail "cross-build.sh left no binaries in $bins"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
# Reproducible archives: fixed owner, order and times.
epoch=$(git log -1 --format=%ct 2>/dev/null || echo 0)
tar_opts=(--sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" --format=gnu)

# ------------------------------------------------ the archive
name=tunnelctl-$version-$target
root=$stage/$name
mkdir -p "$root/bin" "$root/man"
install -m 0755 "$bins/tunnelctl" "$bins/tunnel-watchdog" "$root/bin/"
# The pages come from the build being packaged, run on its emulated CPU.
"$qemu" "$bins/tunnelctl" generate man "$root/man" >&2 ||
    fail "the $target tunnelctl could not write its man pages under $qemu"
install -m 0644 examples/tunnels.yaml "$root/tunnels.yaml.example"
libc_note="musl, linked statically: nothing else to install but OpenSSH's client."
if [[ $target == *-gnu ]]; then
    libc_note="glibc, linked statically (Debian has no musl for big-endian MIPS). One
difference on OpenWrt: after a failure the watchdog waits for the server to greet
before starting ssh again, and it looks a host NAME up with glibc's getent, which
OpenWrt lacks; with a name (not an address) as the server, ssh is then started on the
back-off schedule alone."
fi
cat >"$root/README" <<EOF
tunnelctl $version for $target

Static binaries of tunnelctl and tunnel-watchdog for Linux on this CPU: $libc_note

OpenWrt package architectures this fits (opkg print-architecture shows yours):
  $fits

Install (as root):
  opkg update && opkg install openssh-client    # Dropbear's ssh is not enough
  cp bin/tunnelctl bin/tunnel-watchdog /usr/bin/
  mkdir -p /etc/tunnelctl && cp tunnels.yaml.example /etc/tunnelctl/tunnels.yaml
  vi /etc/tunnelctl/tunnels.yaml               # your server, key, forwards
  tunnelctl check && tunnelctl doctor NAME
  tunnelctl install NAME --target TARGET        # tunnelctl install --help lists them

On OpenWrt pick the procd target where this version lists one: OpenWrt's init is
procd, and the inittab and busybox targets were never tried under it. The man pages are in man/ (OpenWrt has
no man; read them elsewhere with man -l).
What was proven, and how: the project's README, "On a router".
EOF
tarball=$out_dir/$name.tar.gz
tar "${tar_opts[@]}" -C "$stage" -cf - "$name" | gzip -n -9 >"$tarball"
echo "router-package: $tarball ($(stat -c %s "$tarball") bytes)" >&2

# ------------------------------------------------ the .ipk
if [[ -n $ipk_arch ]]; then
    ipk=$stage/ipk
    mkdir -p "$ipk/data/usr/bin" "$ipk/data/etc/tunnelctl" "$ipk/control"
    install -m 0755 "$bins/tunnelctl" "$bins/tunnel-watchdog" "$ipk/data/usr/bin/"
    install -m 0644 examples/tunnels.yaml "$ipk/data/etc/tunnelctl/tunnels.yaml.example"
    installed_size=$(du -sb "$ipk/data" | cut -f1)
    cat >"$ipk/control/control" <<EOF
Package: tunnelctl
Version: $version-1
Depends: openssh-client
License: MIT OR Apache-2.0
Section: net
Architecture: $ipk_arch
Installed-Size: $installed_size
Description: Keep SSH tunnels alive with the init system you already run.
 tunnelctl declares SSH tunnels in /etc/tunnelctl/tunnels.yaml and installs each as
 a service of the init system running tunnel-watchdog, which proves every forward
 carries data.
 Installing this package starts nothing.
EOF
    echo 2.0 >"$ipk/debian-binary"
    tar "${tar_opts[@]}" -C "$ipk/data" -cf - . | gzip -n -9 >"$ipk/data.tar.gz"
    tar "${tar_opts[@]}" -C "$ipk/control" -cf - . | gzip -n -9 >"$ipk/control.tar.gz"
    ipk_file=$out_dir/tunnelctl_$version-1_$ipk_arch.ipk
    tar "${tar_opts[@]}" -C "$ipk" -cf - ./debian-binary ./data.tar.gz ./control.tar.gz |
        gzip -n -9 >"$ipk_file"
    echo "router-package: $ipk_file ($(stat -c %s "$ipk_file") bytes)" >&2
fi
echo "$out_dir"
