#!/usr/bin/env bash
# Links static tunnelctl and tunnel-watchdog for a router or small-board CPU.
#
#   bash packaging/cross-build.sh TARGET [--profile PROFILE]
#
# TARGET (the OpenWrt package architectures each fits):
#   mipsel-unknown-linux-musl        mipsel_24kc (ramips, ...)
#   mips-unknown-linux-gnu           mips_24kc (ath79, ...): big-endian; see below
#   armv7-unknown-linux-musleabihf   arm_cortex-a7_neon-vfpv4 (ipq40xx, bcm2709, ...)
#   aarch64-unknown-linux-musl       aarch64_cortex-a53 (mediatek/filogic, bcm27xx/bcm2710, ...)
# PROFILE: cargo profile, default `router` (Cargo.toml says what it trades for size).
#
# Prints each binary's size; the last line of output is the folder holding the two
# binaries (TARGET_DIR/cross/TARGET/PROFILE). Check them with `qemu-mipsel BINARY
# --version` (qemu-user).
#
# How: the standard library is built from Debian's `rust-src` of exactly this rustc's
# version, in the hard-linked toolchain copy packaging/check-targets.sh prepares (no
# std for these targets can be downloaded from Rust's servers here). The C library is
# Debian 12's `musl-dev` for that architecture, fetched with a private apt configuration
# (own sources list, lists and cache under TARGET_DIR/cross; /etc/apt, the machine's
# architectures and its installed packages are untouched) and unpacked there; the
# linker is Debian's cross gcc for that CPU, told by a specs file to use that musl.
# Debian 12 has no big-endian MIPS port and so no musl for it: the big-endian target is
# `mips-unknown-linux-gnu`, glibc (from libc6-dev-mips-cross) linked statically.
#
# Two snags of GCC's unwinder with musl, and what is done about them: Rust's musl std
# links `-lunwind`, which Rust's own toolchain ships and Debian's rust-src does not, so
# GCC's libgcc_eh.a serves as libunwind.a; GCC 12's libgcc_eh.a (built for glibc) asks
# for glibc's `_dl_find_object` and, on 32-bit ARM, `__gnu_Unwind_Find_exidx`: a small
# C file answers both "not found". Nothing can unwind through that, which is why the
# `router` profile has panic = "abort" (see Cargo.toml).
#
# Needs: apt-get, dpkg-deb, cargo, rustc, and the target's cross gcc (the error names
# its Debian package). About 45 MB (rust-src, once) + 0.6 MB (musl-dev) downloaded.
# Environment: CHECK_TARGETS_MIRROR (as check-targets.sh; also for musl-dev).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# shellcheck source=packaging/cargo-target-dir.sh
source "$repo/packaging/cargo-target-dir.sh"
# shellcheck source=packaging/debian-mirror.sh
source "$repo/packaging/debian-mirror.sh"

fail() { echo "cross-build: $*" >&2; exit 1; }
usage() { sed -n '2,37p' "$0"; }

known_targets=(mipsel-unknown-linux-musl mips-unknown-linux-gnu
    armv7-unknown-linux-musleabihf aarch64-unknown-linux-musl)

target='' profile=router
while [[ $# -gt 0 ]]; do
    case "$1" in
        --profile) [[ -n ${2:-} ]] || { echo "cross-build: --profile needs a name" >&2; exit 2; }
            profile=$2; shift 2 ;;
        --profile=*) profile=${1#--profile=}; shift ;;
        -h | --help) usage; exit 0 ;;
        -*) echo "cross-build: unknown option $1 (try --help)" >&2; exit 2 ;;
        *) [[ -z $target ]] || { echo "cross-build: one TARGET at a time (got $target and $1)" >&2; exit 2; }
            target=$1; shift ;;
    esac
done
[[ -n $target ]] || { echo "cross-build: which target? Known: ${known_targets[*]}" >&2; exit 2; }

# Per target: the C library, Debian's architecture and musl triple, the cross gcc and
# its Debian package.
case "$target" in
    mipsel-unknown-linux-musl)
        libc=musl deb_arch=mipsel musl_triple=mipsel-linux-musl gcc_triple=mipsel-linux-gnu ;;
    armv7-unknown-linux-musleabihf)
        libc=musl deb_arch=armhf musl_triple=arm-linux-musleabihf gcc_triple=arm-linux-gnueabihf ;;
    aarch64-unknown-linux-musl)
        libc=musl deb_arch=arm64 musl_triple=aarch64-linux-musl gcc_triple=aarch64-linux-gnu ;;
    mips-unknown-linux-gnu)
        libc=glibc deb_arch='' musl_triple='' gcc_triple=mips-linux-gnu ;;
    *)
        printf 'cross-build: unknown target %q. Known targets:\n' "$target" >&2
        printf '  %s\n' "${known_targets[@]}" >&2
        exit 2 ;;
esac
gcc=$gcc_triple-gcc

for tool in apt-get dpkg-deb rustc cargo; do
    command -v "$tool" >/dev/null || fail "$tool is missing"
done
command -v "$gcc" >/dev/null ||
    fail "$gcc is missing: install the Debian package gcc-$gcc_triple (apt-get install gcc-$gcc_triple)"
if [[ $libc == glibc ]]; then
    [[ -f /usr/$gcc_triple/lib/libc.a ]] ||
        fail "/usr/$gcc_triple/lib/libc.a is missing: install the Debian package libc6-dev-${gcc_triple%%-*}-cross"
fi
grep -q "^\[profile\.$profile\]" Cargo.toml || [[ $profile == release || $profile == dev ]] ||
    fail "Cargo.toml has no profile '$profile'"

target_dir=$(cargo_target_dir "$repo")
work=$target_dir/cross
# The musl specs file and RUSTFLAGS name folders under it, and neither can quote a space.
[[ $work != *[[:space:]]* ]] ||
    fail "the build folder '$work' has whitespace in its path, which gcc's specs file and RUSTFLAGS cannot hold; set CARGO_TARGET_DIR to a folder without spaces"
mkdir -p "$work"
started=$SECONDS

# ------------------------------------------------ std's source (shared with check-targets)
toolchain=$(bash "$repo/packaging/check-targets.sh" --print-toolchain | tail -n1)
[[ -x $toolchain/bin/rustc ]] || fail "check-targets.sh --print-toolchain named no toolchain"

# ------------------------------------------------ the C library and the link
support=$work/$target/support # the linker wrapper, specs, libunwind.a, the C shim
mkdir -p "$support"
libgcc_eh=$("$gcc" -print-file-name=libgcc_eh.a)
[[ -f $libgcc_eh ]] || fail "$gcc has no libgcc_eh.a (reinstall gcc-$gcc_triple)"

if [[ $libc == musl ]]; then
    sysroot=$work/musl-$deb_arch
    if [[ ! -f $sysroot/.ready ]]; then
        apt_dir=$work/apt
        mirror=$(debian_mirror) || exit 1
        mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/etc"
        echo "deb [arch=armhf,mipsel,arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm main" \
            >"$apt_dir/etc/sources.list"
        # Only our files: no system sources, preferences, architectures or package state.
        apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/etc/sources.list" -o Dir::Etc::SourceParts=/dev/null
            -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
            -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
            -o Dir::State::status=/dev/null -o APT::Architectures::=armhf
            -o APT::Architectures::=mipsel -o APT::Architectures::=arm64
            -o Acquire::Languages=none -o APT::Sandbox::User=root)
        echo "cross-build: fetching musl-dev:$deb_arch from $mirror bookworm (private apt configuration in $apt_dir)" >&2
        apt-get "${apt_opts[@]}" -qq update >&2 ||
            fail "apt-get update of $mirror bookworm failed (network? CHECK_TARGETS_MIRROR=URI picks another mirror)"
        rm -f "$apt_dir/cache/archives"/musl-dev_*_"$deb_arch".deb
        (cd "$apt_dir/cache/archives" && apt-get "${apt_opts[@]}" -qq download "musl-dev:$deb_arch" >&2) ||
            fail "apt-get download musl-dev:$deb_arch failed"
        rm -rf "$sysroot"
        dpkg-deb -x "$(ls "$apt_dir/cache/archives"/musl-dev_*_"$deb_arch".deb | head -n1)" "$sysroot"
        [[ -f $sysroot/usr/lib/$musl_triple/libc.a ]] || fail "musl-dev:$deb_arch holds no usr/lib/$musl_triple/libc.a"
        touch "$sysroot/.ready"
    fi
    # musl's own specs file, pointed at the unpacked folder instead of /usr.
    sed -e "s|/usr/lib/$musl_triple|$sysroot/usr/lib/$musl_triple|g" \
        -e "s|/usr/include/$musl_triple|$sysroot/usr/include/$musl_triple|g" \
        "$sysroot/usr/lib/$musl_triple/musl-gcc.specs" >"$support/musl-gcc.specs"
    specs=(-specs="$support/musl-gcc.specs")
    # GCC's unwinder in place of the libunwind.a Rust's toolchain would ship.
    cp "$libgcc_eh" "$support/libunwind.a"
    # What GCC 12's libgcc_eh.a asks of glibc and musl lacks: "nothing found" (no frame
    # can be unwound through it; the router profile aborts on panic anyway).
    cat >"$support/unwind-shim.c" <<'EOF'
struct dl_find_object;
int _dl_find_object(void *pc, struct dl_find_object *result) { (void)pc; (void)result; return -1; }
#ifdef __arm__
void *__gnu_Unwind_Find_exidx(void *pc, int *count) { (void)pc; *count = 0; return 0; }
#endif
EOF
    "$gcc" "${specs[@]}" -Os -c "$support/unwind-shim.c" -o "$support/unwind-shim.o"
    ar rcs "$support/libunwind-shim.a" "$support/unwind-shim.o"
    link_extra=("-L$support" "-lunwind-shim")
else
    specs=()
    link_extra=()
fi
linker=$support/cc
{
    echo '#!/bin/sh'
    # rustc's spec for mips-unknown-linux-gnu asks gcc for lld, which is not here (and
    # -C linker-flavor does not take that back): the cross gcc's own ld links.
    echo 'for a in "$@"; do shift; [ "$a" = -fuse-ld=lld ] || set -- "$@" "$a"; done'
    printf 'exec %q' "$gcc"
    [[ ${#specs[@]} -eq 0 ]] || printf ' %q' "${specs[@]}"
    printf ' "$@"'
    [[ ${#link_extra[@]} -eq 0 ]] || printf ' %q' "${link_extra[@]}"
    echo
} >"$linker"
chmod 0755 "$linker"

# ------------------------------------------------ the build
upper=$(tr 'a-z-' 'A-Z_' <<<"$target")
build_dir=$work/build
echo "cargo build --profile $profile --target $target (std from source)" >&2
t0=$SECONDS
# -C link-self-contained=no: the C runtime comes from the specs above, not from Rust's
# own musl (which rust-src lacks). RUSTFLAGS reach std too, as they must here.
# The router profile's std: without its backtrace symbolizer (a stripped binary has no
# symbols for it to read) and with its size-over-speed algorithms; any other profile
# gets cargo's default std features (panic-unwind, backtrace), for comparison.
# CROSS_BUILD_STD_FEATURES=LIST overrides.
if [[ $profile == router ]]; then
    std_features=${CROSS_BUILD_STD_FEATURES-optimize_for_size}
else
    std_features=${CROSS_BUILD_STD_FEATURES-panic-unwind,backtrace}
fi
env -u CARGO_ENCODED_RUSTFLAGS RUSTC_BOOTSTRAP=1 \
    RUSTFLAGS="-C target-feature=+crt-static -C link-self-contained=no -L $support" \
    RUSTC="$toolchain/bin/rustc" RUSTDOC="$toolchain/bin/rustdoc" \
    CARGO_TARGET_DIR="$build_dir" \
    "CARGO_TARGET_${upper}_LINKER=$linker" \
    "$toolchain/bin/cargo" build --locked --quiet --profile "$profile" --target "$target" \
    -Zbuild-std=std,panic_abort "-Zbuild-std-features=$std_features" \
    --bins >&2 || fail "cargo build for $target failed (errors above)"
[[ $profile == dev ]] && profile_dir=debug || profile_dir=$profile
out=$build_dir/$target/$profile_dir
for bin in tunnelctl tunnel-watchdog; do
    [[ -x $out/$bin ]] || fail "$out/$bin was not built"
    if "$gcc_triple-readelf" -l "$out/$bin" | grep -q 'INTERP'; then
        fail "$out/$bin asks for a dynamic loader; a router has none of its libraries"
    fi
    printf 'cross-build: %-16s %9d bytes (%d KiB)\n' "$bin" "$(stat -c %s "$out/$bin")" \
        "$(( ($(stat -c %s "$out/$bin") + 1023) / 1024 ))"
done
echo "cross-build: $target built in $((SECONDS - t0)) s ($((SECONDS - started)) s in all)"
echo "$out"
