#!/usr/bin/env bash
# Idle resident memory of tunnel-watchdog while its tunnel is up (the target is under
# 2 MiB, for routers), and which mappings it is made of.
#   bash packaging/measure-rss.sh [WATCHDOG] [IDLE_SECONDS]
# WATCHDOG defaults to TARGET/release/tunnel-watchdog (TARGET: cargo's target directory,
# so CARGO_TARGET_DIR counts; build it first); IDLE_SECONDS
# (default 30) is how long the tunnel runs, probing every 5 s as in the fault bench,
# before /proc/PID/smaps is read. A throwaway sshd on 127.0.0.1 (own config and keys
# in a temporary folder) is the server; everything is stopped and removed on exit.
# Needs /usr/sbin/sshd and ssh; as root, /run/sshd is created (and removed) if missing.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=demo/throwaway-sshd.sh
source "$repo/demo/throwaway-sshd.sh"
# shellcheck source=packaging/cargo-target-dir.sh
source "$repo/packaging/cargo-target-dir.sh"
if [[ -n ${1:-} ]]; then watchdog=$(realpath "$1"); else watchdog=$(cargo_target_dir "$repo")/release/tunnel-watchdog; fi
idle=${2:-30}
[[ -x $watchdog ]] || { echo "measure-rss: no $watchdog (cargo build --release)" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tunnelctl-rss.XXXXXX")
sshd_pid='' wd_pid='' made_run_sshd=0
cleanup() {
    [[ -n $wd_pid ]] && { kill -TERM "$wd_pid" 2>/dev/null || true; wait "$wd_pid" 2>/dev/null || true; }
    [[ -n $sshd_pid ]] && { kill -TERM "$sshd_pid" 2>/dev/null || true; wait "$sshd_pid" 2>/dev/null || true; }
    [[ $made_run_sshd -eq 1 ]] && rmdir /run/sshd 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

throwaway_sshd_start "$tmp" || exit 1
remote_port=$(pick_port) && local_port=$(pick_port) || exit 1

# The fault bench's tool A settings: probe every 5 s, one local and one remote forward.
"$watchdog" --name rss --probe-interval 5s --probe-timeout 5s --probe-failures 2 \
    --state-dir "$tmp/state" --log-file "$tmp/watchdog.log" -- \
    ssh -N -T -F /dev/null -o BatchMode=yes -o ExitOnForwardFailure=yes \
    -o ServerAliveInterval=5 -o ServerAliveCountMax=2 -o ConnectTimeout=10 \
    -o StrictHostKeyChecking=yes -o "UserKnownHostsFile=\"$tmp/known_hosts\"" \
    -i "$tmp/client_key" -o IdentitiesOnly=yes -p "$sshd_port" -l "$(id -un)" \
    -R "$remote_port:127.0.0.1:$sshd_port" -L "127.0.0.1:$local_port:127.0.0.1:$sshd_port" \
    127.0.0.1 &
wd_pid=$!

up=0
for _ in $(seq 1 300); do # at most 30 s
    grep -qx 'state=up' "$tmp/state/state" 2>/dev/null && { up=1; break; }
    kill -0 "$wd_pid" 2>/dev/null || break
    sleep 0.1
done
[[ $up -eq 1 ]] || { echo "measure-rss: the tunnel did not come up; log:" >&2; cat "$tmp/watchdog.log" >&2; exit 1; }
sleep "$idle"
grep -qx 'state=up' "$tmp/state/state" || { echo "measure-rss: the tunnel went down while idle" >&2; exit 1; }

echo "watchdog: $watchdog ($(stat -c %s "$watchdog") bytes), after ${idle}s up"
grep -E '^(VmRSS|RssAnon|RssFile|VmHWM)' "/proc/$wd_pid/status"
# Rss per mapped file (anonymous mappings by their kind), largest first.
printf '%-48s %8s %14s\n' mapping 'Rss KiB' 'PrivDirty KiB'
awk '
    /^[0-9a-f]+-[0-9a-f]+ / { name = ($6 == "") ? "[anon]" : $6; next }
    /^Rss:/ { rss[name] += $2 }
    /^Private_Dirty:/ { dirty[name] += $2 }
    END { for (n in rss) if (rss[n] > 0) printf "%-48s %8d %14d\n", n, rss[n], dirty[n] }
' "/proc/$wd_pid/smaps" | sort -k2,2nr
