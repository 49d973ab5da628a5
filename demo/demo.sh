#!/usr/bin/env bash
# tunnelctl in under a minute, with no server of your own.
#
#   bash demo/demo.sh          # on a terminal: pauses so you can watch
#   bash demo/demo.sh --ci     # no pauses, no colour (also when stdout is not a terminal)
#
# It builds tunnelctl, starts a throwaway OpenSSH server on 127.0.0.1 (its own config,
# host key, client key and known_hosts in a temporary folder), pins the server's key
# with `tunnelctl trust`, checks the tunnel with `tunnelctl doctor`, runs it under
# tunnel-watchdog in a bounded restart loop (what an init system does), freezes the ssh
# client with SIGSTOP and shows the watchdog detect it and the tunnel recover.
# Everything lives in the temporary folder and is removed on exit, Ctrl-C included.
# The one exception: as root, sshd needs /run/sshd; if it is missing it is created and
# removed again.
#
# Environment: TUNNELCTL_BIN_DIR=DIR uses prebuilt tunnelctl and tunnel-watchdog from
# DIR instead of running cargo build.

set -euo pipefail

ci=0
for arg in "$@"; do
    case "$arg" in
        --ci) ci=1 ;;
        -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "demo.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done
[[ -t 1 ]] || ci=1

if [[ $ci -eq 0 && -z "${NO_COLOR:-}" ]]; then
    bold=$'\e[1m' dim=$'\e[2m' green=$'\e[32m' red=$'\e[31m' reset=$'\e[0m'
else
    bold='' dim='' green='' red='' reset=''
fi
started=$SECONDS
say() { printf '\n%s== %s%s\n' "$bold" "$*" "$reset"; }
show() { printf '%s$ %s%s\n' "$dim" "$*" "$reset"; "$@"; }
die() { printf '%sdemo: %s%s\n' "$red" "$*" "$reset" >&2; exit 1; }
pause() {
    # Interactive only, and bounded: carries on by itself after $1 seconds.
    [[ $ci -eq 1 ]] && return 0
    printf '%s(press Enter to %s, or wait %ss)%s' "$dim" "$2" "$1" "$reset"
    read -r -t "$1" _ || true
    echo
}

# ---------------------------------------------------------------- prerequisites
sshd_bin=/usr/sbin/sshd
[[ -x $sshd_bin ]] || die "$sshd_bin is missing: install the OpenSSH server first (sudo apt-get install openssh-server). The demo starts its own copy on 127.0.0.1 and leaves the system's ssh service alone."
for tool in ssh ssh-keygen ssh-keyscan; do
    command -v "$tool" >/dev/null || die "$tool is missing: sudo apt-get install openssh-client"
done

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=demo/throwaway-sshd.sh
source "$repo/demo/throwaway-sshd.sh"
if [[ -n "${TUNNELCTL_BIN_DIR:-}" ]]; then
    bin=$TUNNELCTL_BIN_DIR
else
    # The oldest Rust that builds tunnelctl is the one Cargo.toml names (rust-version).
    need_rust=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' "$repo/Cargo.toml")
    get_rust="curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal && . \"\$HOME/.cargo/env\" (Debian 12's own cargo is 1.63 and Debian 13's 1.85: too old), or set TUNNELCTL_BIN_DIR to prebuilt binaries"
    command -v cargo >/dev/null || die "cargo is missing: tunnelctl needs Rust $need_rust or newer; get it with: $get_rust"
    command -v cc >/dev/null || die "cc is missing: Rust links with it; sudo apt-get install build-essential"
    have_rust=$(rustc --version 2>/dev/null | awk '{print $2}')
    printf '%s\n%s\n' "$need_rust" "${have_rust:-0}" | sort -V -C \
        || die "Rust ${have_rust:-?} is too old: tunnelctl needs $need_rust or newer; get it with: $get_rust"
    say "Building tunnelctl (cargo build)"
    (cd "$repo" && cargo build --quiet --bins) || die "cargo build failed"
    # shellcheck source=packaging/cargo-target-dir.sh
    source "$repo/packaging/cargo-target-dir.sh"
    bin=$(cargo_target_dir "$repo")/debug || die "cannot tell where cargo built (set TUNNELCTL_BIN_DIR)"
fi
tunnelctl=$bin/tunnelctl
watchdog=$bin/tunnel-watchdog
[[ -x $tunnelctl && -x $watchdog ]] || die "no tunnelctl/tunnel-watchdog in $bin"

# ---------------------------------------------------------------- clean-up, always
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tunnelctl-demo.XXXXXX")
sshd_pid='' loop_pid='' made_run_sshd=0
state_dir=$tmp/state/demo

state_value() { sed -n "s/^$1=//p" "$state_dir/state" 2>/dev/null || true; }

cleanup() {
    local code=$?
    trap - EXIT INT TERM
    if [[ -n $loop_pid ]]; then
        # The loop first (no more restarts), then the watchdog, which stops its ssh.
        kill -TERM "$loop_pid" 2>/dev/null || true
        local wd ssh_pid
        wd=$(state_value pid) ssh_pid=$(state_value ssh_pid)
        [[ -n $wd && $wd != 0 ]] && kill -TERM "$wd" 2>/dev/null || true
        for _ in $(seq 1 50); do
            { [[ -z $wd || $wd == 0 ]] || ! kill -0 "$wd" 2>/dev/null; } && break
            sleep 0.1
        done
        [[ -n $wd && $wd != 0 ]] && kill -KILL "$wd" 2>/dev/null || true
        [[ -n $ssh_pid && $ssh_pid != 0 ]] && kill -KILL "$ssh_pid" 2>/dev/null || true
        wait "$loop_pid" 2>/dev/null || true
    fi
    if [[ -n $sshd_pid ]]; then
        kill -TERM "$sshd_pid" 2>/dev/null || true
        wait "$sshd_pid" 2>/dev/null || true
    fi
    [[ $made_run_sshd -eq 1 ]] && rmdir /run/sshd 2>/dev/null || true
    rm -rf "$tmp"
    if [[ $code -eq 0 ]]; then
        printf '\n%sDemo finished in %ss; everything it started is stopped and %s is gone.%s\n' "$bold" "$((SECONDS - started))" "$tmp" "$reset"
    else
        printf '\nDemo stopped (exit %s); cleaned up %s.\n' "$code" "$tmp" >&2
    fi
    exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- a throwaway sshd
say "Starting a throwaway OpenSSH server on 127.0.0.1 (files in $tmp)"
user=$(id -un)
# ClientAlive*: the server notices a dead client within ~4 s and frees its ports.
throwaway_sshd_start "$tmp" "AllowUsers $user" "ClientAliveInterval 2" "ClientAliveCountMax 2" \
    "LogLevel VERBOSE" || die "could not start the throwaway sshd (see above)"
echo "sshd (pid $sshd_pid) listens on 127.0.0.1:$sshd_port; it accepts only the demo key, for user $user."

remote_port=$(pick_port) || die "found no free port on 127.0.0.1"
local_port=$(pick_port) || die "found no free port on 127.0.0.1"
while [[ $local_port == "$remote_port" ]]; do local_port=$(pick_port); done

# ---------------------------------------------------------------- the tunnel
cat >"$tmp/tunnels.yaml" <<EOF
# The demo tunnel: a classic reverse tunnel home (-R) plus a local forward (-L),
# both to the demo sshd, which speaks first, so every probe reads its banner.
tunnels:
  demo:
    host: 127.0.0.1
    port: $sshd_port
    user: $user
    identity: $tmp/client_key
    known_hosts: $tmp/known_hosts
    keepalive: { interval: 2s, count: 2 }
    probe: { interval: 1s, timeout: 1s, failures: 2 }
    backoff: { initial: 1s, max: 10s }
    connect_timeout: 5s
    forwards:
      - remote: $remote_port
        to: localhost:$sshd_port
      - local: $local_port
        to: localhost:$sshd_port
EOF
export TUNNELCTL_CONFIG=$tmp/tunnels.yaml
: >"$tmp/known_hosts" # empty: nothing is trusted yet
say "The configuration ($TUNNELCTL_CONFIG)"
sed -n '3,$p' "$tmp/tunnels.yaml"
show "$tunnelctl" check

say "Pin the server's host key (a service has no terminal to say yes on)"
show "$tunnelctl" trust demo --yes
pause 20 "continue"

say "Check everything once, in plain words"
show "$tunnelctl" doctor demo --timeout 10s || die "doctor found a problem (see above); the demo sshd's log says:$(printf '\n'; tail -n 5 "$tmp/sshd.log")"
pause 20 "start the tunnel"

# The exact watchdog arguments an init system would run (the inittab args file), with
# the state directory moved into the demo folder and the log sent to our log file.
say "Running the tunnel under tunnel-watchdog, restarted like an init system would"
mapfile -t rendered < <("$tunnelctl" render demo --target inittab --watchdog /usr/bin/tunnel-watchdog)
args=() in_args=0 skip=''
for line in "${rendered[@]}"; do
    if [[ $line == '# ==> '*'.args <==' ]]; then in_args=1; continue; fi
    [[ $in_args -eq 1 ]] || continue
    [[ ${#args[@]} -eq 0 && $line == '#'* ]] && continue
    if [[ -n $skip ]]; then skip=''; continue; fi
    case "$line" in
        --state-dir | --log-file) skip=1; continue ;;
    esac
    args+=("$line")
done
[[ ${#args[@]} -gt 4 ]] || die "could not read the watchdog arguments from \`tunnelctl render\`"
args=(--state-dir "$state_dir" --log-file "$tmp/watchdog.log" "${args[@]}")
mkdir -p -m 0700 "$tmp/state"
printf '%s$ %s %s%s\n' "$dim" "$watchdog" "${args[*]}" "$reset"
# Bounded: at most 20 starts. Exit 0 (stopped) and 2 (usage) are final, as in the units.
(
    for _ in $(seq 1 20); do
        rc=0
        "$watchdog" "${args[@]}" || rc=$?
        echo "[demo loop] tunnel-watchdog exited with $rc; starting it again" >>"$tmp/watchdog.log"
        [[ $rc -eq 0 || $rc -eq 2 ]] && break
    done
) &
loop_pid=$!

wait_for() { # wait_for SECONDS CONDITION...: poll every 0.1 s
    local limit=$1; shift
    for _ in $(seq 1 $((limit * 10))); do
        "$@" && return 0
        sleep 0.1
    done
    return 1
}
is_up() { [[ $(state_value state) == up ]]; }
wait_for 30 is_up || die "the tunnel did not come up in 30 s; watchdog log:$(printf '\n'; cat "$tmp/watchdog.log")"
show "$tunnelctl" status demo --state-dir "$state_dir"

say "Traffic through both forwards (the far end is the demo sshd, which says hello first)"
printf 'local forward  127.0.0.1:%s -> %s\n' "$local_port" "$(timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$local_port && head -n1 <&3" | tr -d '\r')"
printf 'remote forward server:%s -> %s\n' "$remote_port" "$(timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$remote_port && head -n1 <&3" | tr -d '\r')"

if [[ $ci -eq 0 ]]; then
    # Live: the table redrawn in place for a few seconds (up as many lines as it has,
    # one per forward included, then rewrite; printed straight to keep its colour).
    echo
    "$tunnelctl" status demo --state-dir "$state_dir" || true
    for _ in 1 2 3 4 5; do
        sleep 1
        printf '\e[%dA' "$("$tunnelctl" status demo --state-dir "$state_dir" | wc -l)"
        "$tunnelctl" status demo --state-dir "$state_dir" | sed 's/$/\x1b[K/' || true
    done
fi
pause 20 "freeze the ssh client"

# ---------------------------------------------------------------- the fault
frozen=$(state_value ssh_pid)
[[ -n $frozen && $frozen != 0 ]] || die "no ssh pid in the state file"
say "Freezing the ssh client (kill -STOP $frozen): its TCP connection stays open, keepalives cannot see it"
log_lines=$(wc -l <"$tmp/watchdog.log")
kill -STOP "$frozen"
t0=${EPOCHREALTIME/[.,]/}
since() { # seconds since a ${EPOCHREALTIME/[.,]/} stamp, one decimal
    local us=$(( ${EPOCHREALTIME/[.,]/} - $1 ))
    printf '%d.%d' $((us / 1000000)) $((us / 100000 % 10))
}
gone() { ! kill -0 "$frozen" 2>/dev/null || [[ $(awk '{print $3}' "/proc/$frozen/stat" 2>/dev/null) == Z ]]; }
wait_for 30 gone || die "the frozen ssh was not detected within 30 s"
detected=$(since "$t0")
printf '%sdetected after %ss:%s the probes failed, the frozen ssh was killed.\n' "$green" "$detected" "$reset"
# One read of the state file: read twice, the old watchdog's last write ("failed", ssh pid
# 0) could land between the two reads and look like a new ssh that is up.
recovered_up() {
    local state
    state=$(cat "$state_dir/state" 2>/dev/null) || return 1
    local pid
    pid=$(sed -n 's/^ssh_pid=//p' <<<"$state")
    grep -qx 'state=up' <<<"$state" && [[ -n $pid && $pid != 0 && $pid != "$frozen" ]]
}
wait_for 40 recovered_up || die "the tunnel did not recover within 40 s; watchdog log:$(printf '\n'; tail -n 20 "$tmp/watchdog.log")"
recovered=$(since "$t0")
printf '%srecovered after %ss:%s a new ssh (pid %s) carries both forwards again.\n' "$green" "$recovered" "$reset" "$(state_value ssh_pid)"

say "What the watchdog logged"
tail -n +"$((log_lines + 1))" "$tmp/watchdog.log"
show "$tunnelctl" status demo --state-dir "$state_dir"
printf 'remote forward server:%s -> %s\n' "$remote_port" "$(timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$remote_port && head -n1 <&3" | tr -d '\r')"

say "Done: the frozen client was detected in ${detected}s and the tunnel recovered in ${recovered}s"
cat <<EOF
For a real tunnel: put it in ~/.config/tunnelctl/tunnels.yaml (or /etc/tunnelctl/tunnels.yaml),
then: tunnelctl trust NAME, tunnelctl doctor NAME, tunnelctl install NAME, tunnelctl status.
EOF
