#!/usr/bin/env bash
# Stripped size of both release binaries under each candidate release profile, and
# whether tunnel-watchdog links any tera or serde_saphyr code (it must not: see
# docs/design.md). Each variant builds into its own target dir under TARGET/sizes/
# (TARGET: cargo's target directory, so CARGO_TARGET_DIR counts).
#   bash packaging/measure-sizes.sh [VARIANT...]   VARIANT: 3-unwind s-unwind s-abort z-abort 3-abort
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=packaging/cargo-target-dir.sh
source packaging/cargo-target-dir.sh
target=$(cargo_target_dir)
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(3-unwind s-unwind s-abort z-abort)

printf '%-10s %14s %16s\n' profile tunnelctl tunnel-watchdog
for v in "${variants[@]}"; do
  opt=${v%%-*} panic=${v#*-}
  dir=$target/sizes/$v
  CARGO_TARGET_DIR=$dir CARGO_PROFILE_RELEASE_OPT_LEVEL=$opt CARGO_PROFILE_RELEASE_PANIC=$panic \
    CARGO_PROFILE_RELEASE_STRIP=false cargo build --release --locked --quiet --bins
  sizes=()
  for bin in tunnelctl tunnel-watchdog; do
    strip -o "$dir/$bin.stripped" "$dir/release/$bin"
    sizes+=("$(stat -c %s "$dir/$bin.stripped")")
  done
  printf '%-10s %14s %16s\n' "$v" "${sizes[0]}" "${sizes[1]}"
done

# Symbols of the last variant's unstripped watchdog.
syms=$(nm --demangle "$dir/release/tunnel-watchdog" | grep -Ec 'tera::|serde_saphyr::' || true)
echo "tunnel-watchdog symbols from tera or serde_saphyr ($v): $syms"
