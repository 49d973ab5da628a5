#!/usr/bin/env bash
# Type-checks the library and both binaries for the platforms this machine cannot run:
# macOS (launchd) and the musl routers (inittab/BusyBox), with warnings denied.
#
#   bash packaging/check-targets.sh [--targets T1,T2,...] [--discard-builds]
#   bash packaging/check-targets.sh --print-toolchain   # prepare (or reuse) the toolchain
#                                                       # copy below, print its path, stop
#
# Default targets: aarch64-apple-darwin x86_64-apple-darwin aarch64-unknown-linux-musl
# armv7-unknown-linux-musleabihf mipsel-unknown-linux-musl. --discard-builds removes each
# target's build (about 200 MB, mostly its std) once it is checked, so the disk holds one
# at a time (CI does; a later run then rebuilds std, about 30 s per target).
#
# No standard library for these targets can be downloaded from Rust's servers here, so
# it is built from source (`cargo check -Zbuild-std`, no foreign linker needed). The
# source is Debian's `rust-src` package of exactly this rustc's version, fetched with a
# private apt configuration (its own sources list, lists and cache; /etc/apt and the
# system's package state untouched) and put into a hard-linked copy of the toolchain
# (`rustc --print sysroot`; the toolchain itself is not modified). A rustc whose version
# Debian does not ship is an error naming the versions that exist.
#
# Everything lives under TARGET/check-targets/ (TARGET: cargo's target directory, so
# CARGO_TARGET_DIR is honoured): the prepared toolchain (reused by later runs) and the
# cross builds' own target directory (normal builds are not disturbed). Prints the time
# of each target. Exit 1 if any target fails.
#
# Environment: CHECK_TARGETS_MIRROR=URI (default: the mirror of /etc/apt's Debian source,
# packaging/debian-mirror.sh), CHECK_TARGETS_SUITE (default trixie-backports).
# Needs apt-get, dpkg-deb, cargo, rustc; about 45 MB downloaded once, 70 MB unpacked.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# shellcheck source=packaging/cargo-target-dir.sh
source "$repo/packaging/cargo-target-dir.sh"
# shellcheck source=packaging/debian-mirror.sh
source "$repo/packaging/debian-mirror.sh"

targets=(aarch64-apple-darwin x86_64-apple-darwin aarch64-unknown-linux-musl
    armv7-unknown-linux-musleabihf mipsel-unknown-linux-musl)
print_toolchain=0 discard_builds=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --print-toolchain) print_toolchain=1; shift ;;
        --targets) [[ -n ${2:-} ]] || { echo "check-targets: --targets needs a comma-separated list" >&2; exit 2; }
            IFS=, read -r -a targets <<<"$2"; shift 2 ;;
        --targets=*) IFS=, read -r -a targets <<<"${1#--targets=}"; shift ;;
        --discard-builds) discard_builds=1; shift ;;
        -h | --help) sed -n '2,29p' "$0"; exit 0 ;;
        *) echo "check-targets: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done
fail() { echo "check-targets: $*" >&2; exit 1; }
for tool in apt-get apt-cache dpkg-deb rustc cargo; do
    command -v "$tool" >/dev/null || fail "$tool is missing"
done
known=$(rustc --print target-list)
for t in "${targets[@]}"; do
    grep -qx -- "$t" <<<"$known" || fail "rustc does not know the target '$t' (rustc --print target-list)"
done

rustc_version=$(rustc -V | awk '{print $2}')    # 1.95.0
sysroot=$(rustc --print sysroot)
commit=$(rustc -vV | sed -n 's/^commit-hash: //p')
work=$(cargo_target_dir "$repo")/check-targets
toolchain=$work/toolchain-$rustc_version
stamp=$toolchain/.check-targets-ready
want_stamp="rustc $rustc_version $commit from $sysroot"

# ------------------------------------------------ the toolchain copy with rust-src
prepare_toolchain() {
    local apt_dir=$work/apt mirror suite arch versions debver deb unpacked started
    started=$SECONDS
    suite=${CHECK_TARGETS_SUITE:-trixie-backports}
    mirror=$(debian_mirror) || exit 1
    arch=$(dpkg --print-architecture)
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/etc"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main" \
        >"$apt_dir/etc/sources.list"
    # Only our files: no system sources, preferences or package state. Sandbox::User=root:
    # the _apt user may not reach a cache under a private (0700) home.
    apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/etc/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
        -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
        -o Dir::State::status=/dev/null -o "APT::Architectures::=$arch" -o Acquire::Languages=none
        -o APT::Sandbox::User=root)
    echo "check-targets: fetching the package lists of $mirror $suite (private apt configuration in $apt_dir)" >&2
    apt-get "${apt_opts[@]}" -qq update >&2 || fail "apt-get update of $mirror $suite failed (network? CHECK_TARGETS_MIRROR=URI picks another mirror)"
    versions=$(apt-cache "${apt_opts[@]}" madison rust-src | awk -F'|' '{gsub(/ /, "", $2); print $2}')
    # Debian's version of upstream 1.95.0 is 1.95.0+dfsg1-N (~bpoN); the highest first.
    debver=$(grep -E "^${rustc_version//./\\.}([+~-]|$)" <<<"$versions" | head -n1 || true)
    if [[ -z $debver ]]; then
        local have
        have=$(printf '%s\n' "$versions" | paste -sd, - | sed 's/,/, /g')
        fail "rustc is $rustc_version, but Debian ($mirror $suite) has no rust-src of that version; it has: ${have:-none}. Use a rustc of one of those versions (rustup toolchain install X.Y.Z), or pick another suite with CHECK_TARGETS_SUITE=..."
    fi
    echo "check-targets: downloading rust-src $debver for rustc $rustc_version" >&2
    (cd "$apt_dir/cache/archives" && apt-get "${apt_opts[@]}" -qq download "rust-src=$debver" >&2) ||
        fail "apt-get download rust-src=$debver failed"
    deb=$(ls "$apt_dir/cache/archives"/rust-src_*.deb | head -n1)
    echo "check-targets: $(du -h "$deb" | cut -f1) downloaded; unpacking" >&2
    unpacked=$work/rust-src.unpacked
    rm -rf "$unpacked" "$toolchain"
    dpkg-deb -x "$deb" "$unpacked"
    local library
    library=$(ls -d "$unpacked"/usr/src/rustc-*/library 2>/dev/null | head -n1)
    [[ -n $library && -f $library/Cargo.toml ]] || fail "$deb holds no usr/src/rustc-*/library/Cargo.toml"
    # Hard links: no copy of the 500 MB toolchain, and the original is never written.
    # Documentation (share/) is left out.
    mkdir -p "$toolchain"
    local part
    for part in bin lib libexec etc; do
        [[ -e $sysroot/$part ]] && cp -al "$sysroot/$part" "$toolchain/"
    done
    # A rust-src component rustup may have installed is replaced in the copy only
    # (removing a hard link leaves the original file alone).
    rm -rf "$toolchain/lib/rustlib/src"
    mkdir -p "$toolchain/lib/rustlib/src/rust"
    mv "$library" "$toolchain/lib/rustlib/src/rust/library"
    rm -rf "$unpacked" "$deb"
    echo "$want_stamp; rust-src $debver" >"$stamp"
    echo "check-targets: toolchain prepared in $toolchain ($(du -sh "$toolchain/lib/rustlib/src/rust/library" | cut -f1) of library source, $((SECONDS - started)) s)" >&2
}

if [[ -f $stamp && $(cut -d';' -f1 "$stamp") == "$want_stamp" ]]; then
    echo "check-targets: reusing $toolchain ($(cut -d';' -f2 "$stamp" | sed 's/^ //'))" >&2
else
    prepare_toolchain
fi
[[ $("$toolchain/bin/rustc" --print sysroot) == "$toolchain" ]] ||
    fail "$toolchain/bin/rustc does not use its own sysroot; remove $toolchain and run again"
if [[ $print_toolchain -eq 1 ]]; then
    echo "$toolchain"
    exit 0
fi

# ------------------------------------------------ the checks
results=() failed=0
for t in "${targets[@]}"; do
    echo "check-targets: cargo check --target $t" >&2
    t0=${EPOCHREALTIME/[.,]/}
    rc=0
    # RUSTFLAGS reaches our crates only (std and dependencies have their lints capped);
    # a user's RUSTFLAGS (host CPU flags, say) would not fit a foreign target. A type
    # check has no use for debug info, which is a third of std's build on disk.
    env -u CARGO_ENCODED_RUSTFLAGS RUSTFLAGS=-Dwarnings RUSTC_BOOTSTRAP=1 CARGO_PROFILE_DEV_DEBUG=0 \
        RUSTC="$toolchain/bin/rustc" RUSTDOC="$toolchain/bin/rustdoc" \
        CARGO_TARGET_DIR="$work/build" \
        "$toolchain/bin/cargo" check --locked --quiet -Zbuild-std=std,panic_abort \
        --target "$t" --lib --bins || rc=$?
    if [[ $discard_builds -eq 1 ]]; then rm -rf "${work:?}/build/$t"; fi
    us=$(( ${EPOCHREALTIME/[.,]/} - t0 ))
    secs=$(printf '%d.%d' $((us / 1000000)) $((us / 100000 % 10)))
    if [[ $rc -eq 0 ]]; then results+=("ok      $t  ${secs} s"); else results+=("FAILED  $t  ${secs} s"); failed=$((failed + 1)); fi
done
printf 'check-targets: %s\n' "${results[@]}"
[[ $failed -eq 0 ]] || fail "$failed of ${#targets[@]} target(s) failed (errors above)"
echo "check-targets: ${#targets[@]} target(s) type-check with warnings denied"
