#!/usr/bin/env bash
# Mutation testing of the pure modules with the fast tests (the library's unit tests):
# cargo-mutants changes one thing at a time (an operator, a constant, a function body)
# and a mutant the tests do not catch is logic nothing pins. Not part of .ci/run (it
# builds and tests once per mutant: minutes per module).
#
#   bash packaging/mutants.sh                      # every module below, one run each
#   bash packaging/mutants.sh src/escape.rs        # some of them
#   MUTANTS_TIMEOUT=60 bash packaging/mutants.sh   # seconds per mutant's test run
#
# Needs cargo-mutants (`cargo install --locked cargo-mutants`). Writes each module's
# results under TARGET/mutants/NAME/mutants.out (caught.txt, missed.txt, timeout.txt,
# unviable.txt) and prints one score line per module. Exit 0 when no mutant was missed.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=packaging/cargo-target-dir.sh
source packaging/cargo-target-dir.sh

modules=(
    src/watchdog/backoff.rs
    src/escape.rs
    src/duration.rs
    src/config/values.rs
    src/state.rs
    src/install/inittab_text.rs
    src/metrics.rs
)
if [[ $# -gt 0 ]]; then modules=("$@"); fi

if ! command -v cargo-mutants >/dev/null; then
    echo "mutants.sh: cargo-mutants is missing: cargo install --locked cargo-mutants" >&2
    exit 2
fi

out_root="$(cargo_target_dir .)/mutants"
mkdir -p "$out_root"
missed_any=0
count() { if [[ -f $1 ]]; then grep -c . "$1" || true; else echo 0; fi; }
for module in "${modules[@]}"; do
    if [[ ! -f $module ]]; then
        echo "mutants.sh: $module does not exist (moved?): skipped" >&2
        missed_any=1
        continue
    fi
    name=$(basename "$module" .rs)
    out="$out_root/$name"
    rm -rf "$out"
    status=0
    # --lib for the build as well as the test run: each mutant then rebuilds only the
    # library's test binary, not the integration tests and binaries it does not run.
    cargo mutants --file "$module" --timeout "${MUTANTS_TIMEOUT:-120}" \
        --output "$out" --no-shuffle --cargo-arg=--lib || status=$?
    # 0: all caught; 2: some missed; 3: some timed out (a timeout counts as caught).
    case $status in 0 | 2 | 3) ;; *) echo "mutants.sh: cargo mutants failed on $module ($status)" >&2; exit "$status" ;; esac
    dir="$out/mutants.out"
    caught=$(count "$dir/caught.txt") missed=$(count "$dir/missed.txt")
    timeout=$(count "$dir/timeout.txt") unviable=$(count "$dir/unviable.txt")
    printf '%s: %d of %d viable mutants caught (%d missed, %d timed out, %d unviable)\n' \
        "$module" "$((caught + timeout))" "$((caught + timeout + missed))" "$missed" "$timeout" "$unviable"
    if [[ $missed -gt 0 ]]; then
        sed 's/^/  missed: /' "$dir/missed.txt"
        missed_any=1
    fi
done
exit "$missed_any"
