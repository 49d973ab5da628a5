# Sourced by the scripts (demo/, benches/, packaging/, .ci/run), never run:
#
#   cargo_target_dir [DIR]
#
# prints the absolute path of the target directory cargo builds into for the package in
# DIR (default: the current directory): CARGO_TARGET_DIR, build.target-dir in a
# .cargo/config.toml, or ./target. Asking cargo is the one way that honours all of them
# and resolves a relative CARGO_TARGET_DIR the way cargo does. Needs no python3 or jq:
# the value is cut out of `cargo metadata`'s JSON, where only `"` and `\` are escaped
# in a path.
cargo_target_dir() {
    local json dir
    json=$(cd "${1:-.}" && cargo metadata --format-version 1 --no-deps --offline) || {
        echo "cargo metadata failed in ${1:-.}: cannot tell where cargo builds" >&2
        return 1
    }
    dir=$(printf '%s\n' "$json" |
        sed -n 's/.*"target_directory":"\(\([^"\\]\|\\.\)*\)".*/\1/p' |
        sed 's/\\\(.\)/\1/g')
    [[ $dir == /* ]] || { echo "cargo metadata named no target_directory" >&2; return 1; }
    printf '%s\n' "$dir"
}
