#!/usr/bin/env bash
# Idle CPU of tunnel-watchdog per probe round (the target: no higher than autossh with a
# monitor port at the same poll interval).
#
#   bash benches/idle-cpu.sh [--rounds N] [--interval DUR] [--forwards LR|L|R|D]
#                            [--keepalive SECS] [--tool plain|strace|perf|callgrind]
#
# Starts a throwaway sshd on 127.0.0.1 (files in a temporary folder, removed on exit),
# runs the RELEASE tunnel-watchdog with one -L and one -R forward (both to the sshd's
# port, which speaks first; --forwards picks a subset, D = one -D alone) and an sd_notify receiver (so WATCHDOG=1/STATUS= are sent
# as under systemd), waits for READY=1, then measures N probe rounds (default 60, one
# per second) and prints per round (ssh's ServerAliveInterval is --keepalive, default 5;
# no longer than the interval, the watchdog looks at ssh's keepalive between rounds):
#   cpu_us      on-CPU time of the watchdog (/proc/PID/schedstat, ns resolution) plus
#               its reaped children (cutime+cstime, 10 ms ticks)
#   ticks       utime+stime in clock ticks (what the fault bench reads), per round
#   wakeups     voluntary + involuntary context switches (/proc/PID/status)
#   datagrams   sd_notify messages over the window (WATCHDOG_USEC set as the unit's WatchdogSec)
# --tool strace   also runs `strace -c -f` on the watchdog for the window (syscalls/round)
# --tool perf    samples the watchdog (perf record -e cpu-clock, kernel included) and
#                 prints the hottest symbols
# --tool callgrind  runs the watchdog under valgrind --tool=callgrind from the start and
#                 prints instructions per round over the window (callgrind_control)
#
# Environment: TUNNELCTL_BIN_DIR=DIR uses DIR/tunnel-watchdog instead of `cargo build
# --release`. Needs root (sshd) or a user that may run sshd on a high port.

set -euo pipefail

rounds=60 interval=1s tool=plain forwards=LR keepalive=5
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) rounds=$2; shift 2 ;;
        --interval) interval=$2; shift 2 ;;
        --tool) tool=$2; shift 2 ;;
        --forwards) forwards=$2; shift 2 ;;
        --keepalive) keepalive=$2; shift 2 ;;
        -h | --help) sed -n '2,26p' "$0"; exit 0 ;;
        *) echo "idle-cpu.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
case "$interval" in
    *ms) interval_s=$(awk "BEGIN{print ${interval%ms}/1000}") ;;
    *s) interval_s=${interval%s} ;;
    *) echo "idle-cpu.sh: --interval like 1s or 500ms" >&2; exit 2 ;;
esac

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=demo/throwaway-sshd.sh
source "$repo/demo/throwaway-sshd.sh"
if [[ -n "${TUNNELCTL_BIN_DIR:-}" ]]; then
    watchdog=$TUNNELCTL_BIN_DIR/tunnel-watchdog
else
    (cd "$repo" && cargo build --quiet --release --bin tunnel-watchdog)
    # shellcheck source=packaging/cargo-target-dir.sh
    source "$repo/packaging/cargo-target-dir.sh"
    watchdog=$(cargo_target_dir "$repo")/release/tunnel-watchdog
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/idle-cpu.XXXXXX")
sshd_pid='' wd_pid='' rx_pid='' strace_pid=''
cleanup() {
    local code=$?
    trap - EXIT INT TERM
    for pid in $strace_pid $wd_pid $rx_pid $sshd_pid; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in $strace_pid $wd_pid $rx_pid $sshd_pid; do
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$tmp"
    exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- sshd on 127.0.0.1
throwaway_sshd_start "$tmp" || exit 1

# ---------------------------------------------------------------- sd_notify receiver
# Counts datagrams and READY=1 into files, like systemd would receive them.
python3 - "$tmp/notify" "$tmp" <<'EOF' &
import socket, sys
path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
n = 0
while True:
    msg = s.recv(4096)
    n += 1
    with open(out + "/notify.count.tmp", "w") as f:
        f.write(str(n))
    import os
    os.replace(out + "/notify.count.tmp", out + "/notify.count")
    if b"READY=1" in msg:
        open(out + "/ready", "w").close()
EOF
rx_pid=$!
for _ in $(seq 1 100); do [[ -S $tmp/notify ]] && break; sleep 0.05; done

# ---------------------------------------------------------------- the watchdog
remote_port=$(pick_port)
local_port=$(pick_port)
wd_args=(--name idle --state-dir "$tmp/state" --probe-interval "$interval" --probe-timeout 5s
    --probe-failures 2 --
    ssh -N -o BatchMode=yes -o ExitOnForwardFailure=yes -o ServerAliveInterval="$keepalive"
    -o ServerAliveCountMax=2 -o ConnectTimeout=10 -o IdentitiesOnly=yes
    -o "UserKnownHostsFile=\"$tmp/known_hosts\"" -o StrictHostKeyChecking=yes
    -i "$tmp/client_key" -p "$sshd_port"
    "$(id -un)@127.0.0.1")
fwd=()
[[ $forwards == *L* ]] && fwd+=(-L "127.0.0.1:$local_port:127.0.0.1:$sshd_port")
[[ $forwards == *R* ]] && fwd+=(-R "127.0.0.1:$remote_port:127.0.0.1:$sshd_port")
[[ $forwards == *D* ]] && fwd+=(-D "127.0.0.1:$local_port")
# ssh takes options before the destination only.
wd_args=("${wd_args[@]:0:${#wd_args[@]}-1}" "${fwd[@]}" "${wd_args[-1]}")
prefix=()
if [[ $tool == callgrind ]]; then
    prefix=(valgrind --tool=callgrind --callgrind-out-file="$tmp/callgrind.out" -q)
fi
# WatchdogSec as the rendered unit has it (src/targets/systemd.rs, watchdog_sec): failures
# × interval + timeout + interval, whole seconds up.
watchdog_usec=$(awk "BEGIN{s = 3 * $interval_s + 5; print (s == int(s) ? s : int(s) + 1) * 1000000}")
NOTIFY_SOCKET=$tmp/notify WATCHDOG_USEC=$watchdog_usec "${prefix[@]}" "$watchdog" "${wd_args[@]}" \
    2>"$tmp/watchdog.log" &
wd_pid=$!
for _ in $(seq 1 400); do [[ -e $tmp/ready ]] && break; sleep 0.05; done
[[ -e $tmp/ready ]] || { echo "no READY=1; watchdog log:" >&2; cat "$tmp/watchdog.log" >&2; exit 1; }
sleep 2 # past the first rounds

ns() { cut -d' ' -f1 "/proc/$wd_pid/schedstat"; }
ticks() { awk '{sub(/.*\) /, ""); print $12+$13, $14+$15}' "/proc/$wd_pid/stat"; }
switches() { awk '/ctxt_switches/ {s += $2} END {print s}' "/proc/$wd_pid/status"; }
notifies() { cat "$tmp/notify.count" 2>/dev/null || echo 0; }

if [[ $tool == strace ]]; then
    strace -c -f -q -o "$tmp/strace.txt" -p "$wd_pid" &
    strace_pid=$!
    sleep 0.5
fi
if [[ $tool == callgrind ]]; then callgrind_control -z "$wd_pid" >/dev/null; fi
if [[ $tool == perf ]]; then
    perf record -q -e cpu-clock -F 20000 -g -o "$tmp/perf.data" -p "$wd_pid" 2>/dev/null &
    strace_pid=$!
    sleep 0.5
fi
ns0=$(ns); read -r t0 c0 < <(ticks); sw0=$(switches); n0=$(notifies)
log0=$(wc -l <"$tmp/watchdog.log")
start=$(date +%s.%N)
sleep "$(awk "BEGIN{print $rounds * $interval_s}")"
ns1=$(ns); read -r t1 c1 < <(ticks); sw1=$(switches); n1=$(notifies)
end=$(date +%s.%N)
if [[ $tool == callgrind ]]; then callgrind_control -d "$wd_pid" >/dev/null; sleep 1; fi
if [[ -n $strace_pid ]]; then
    kill -INT "$strace_pid"; wait "$strace_pid" 2>/dev/null || true; strace_pid=''
fi

pings=$((n1 - n0)) # one per round (WATCHDOG=1 with the status)
[[ $pings -gt 0 ]] || { echo "no probe round ended in the window; log:" >&2; cat "$tmp/watchdog.log" >&2; exit 1; }
made=$rounds # one round per interval while they pass
# A round that did not pass is confirmed at once (more rounds, more work): the figures
# would not be an idle tunnel's. The watchdog logs nothing while rounds pass.
not_idle=$(tail -n +"$((log0 + 1))" "$tmp/watchdog.log" | grep -E ' (warning|error) ' || true)
hz=$(getconf CLK_TCK)
awk -v ns="$((ns1 - ns0))" -v t="$((t1 - t0))" -v c="$((c1 - c0))" -v sw="$((sw1 - sw0))" \
    -v n="$made" -v p="$pings" -v hz="$hz" -v secs="$(awk "BEGIN{print $end - $start}")" -v iv="$interval" 'BEGIN {
    printf "window %.1f s, interval %s, %d rounds, %d sd_notify datagrams received\n", secs, iv, n, p
    printf "cpu_us/round %.0f (schedstat %.1f ms total; reaped children %d ticks)\n", (ns / 1000 + c * 1e6 / hz) / n, ns / 1e6, c
    printf "ticks/round  %.3f (utime+stime %d ticks at %d Hz)\n", t / n, t, hz
    printf "wakeups/round %.1f (context switches %d)\n", sw / n, sw
}'
if [[ $tool == strace ]]; then
    echo "syscalls over the window (strace -c -f), per round:"
    awk -v n="$made" '/^ *[0-9.]+ +[0-9.]+ +[0-9]+ +[0-9]+/ {
        calls = $4; name = $NF; if (name == "total") next; printf "  %-16s %6.1f\n", name, calls / n; total += calls }
        END { printf "  %-16s %6.1f\n", "TOTAL", total / n }' "$tmp/strace.txt"
fi
if [[ $tool == perf ]]; then
    perf report -i "$tmp/perf.data" ${PERF_REPORT_CHILDREN:---no-children} --sort sym --stdio -g none 2>/dev/null \
        | grep -v '^#' | grep -v '^$' | head -${PERF_TOP:-40}
fi
if [[ $tool == callgrind ]]; then
    f=$(ls -t "$tmp"/callgrind.out* | head -1)
    ir=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
    echo "instructions/round $((ir / made)) (callgrind, $ir over the window)"
    cp "$f" "${CALLGRIND_KEEP:-/tmp/idle-cpu.callgrind.out}"
    echo "profile kept in ${CALLGRIND_KEEP:-/tmp/idle-cpu.callgrind.out} (callgrind_annotate it)"
fi
if [[ -n $not_idle ]]; then
    echo "idle-cpu.sh: rounds failed in the window, so these figures are not an idle tunnel's:" >&2
    printf '%s\n' "$not_idle" >&2
    exit 1
fi
