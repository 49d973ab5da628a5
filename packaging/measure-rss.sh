#!/usr/bin/env bash
# Idle resident memory of tunnel-watchdog while its tunnel is up (issue 5's target:
# under 2 MiB), and which mappings it is made of.
#   bash packaging/measure-rss.sh [WATCHDOG] [IDLE_SECONDS]
# WATCHDOG defaults to target/release/tunnel-watchdog (build it first); IDLE_SECONDS
# (default 30) is how long the tunnel runs, probing every 5 s as in the fault bench,
# before /proc/PID/smaps is read. A throwaway sshd on 127.0.0.1 (own config and keys
# in a temporary folder) is the server; everything is stopped and removed on exit.
# Needs /usr/sbin/sshd and ssh; as root, /run/sshd is created (and removed) if missing.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
watchdog=$(realpath "${1:-$repo/target/release/tunnel-watchdog}")
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

ssh-keygen -q -t ed25519 -N '' -f "$tmp/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$tmp/client_key"
cp "$tmp/client_key.pub" "$tmp/authorized_keys"
if [[ $(id -u) -eq 0 && ! -d /run/sshd ]]; then
    mkdir -m 0755 /run/sshd && made_run_sshd=1
fi
# Ports from the kernel: bind port 0 and read what it gave (then free it again).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sshd_port=$(free_port) remote_port=$(free_port) local_port=$(free_port)
cat >"$tmp/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $sshd_port
HostKey $tmp/host_key
PidFile none
AuthorizedKeysFile $tmp/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
EOF
/usr/sbin/sshd -D -e -f "$tmp/sshd_config" 2>>"$tmp/sshd.log" &
sshd_pid=$!
for _ in $(seq 1 100); do # at most 10 s for its banner
    [[ $(timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$sshd_port && head -c 4 <&3" 2>/dev/null) == SSH- ]] && break
    kill -0 "$sshd_pid" 2>/dev/null || { echo "measure-rss: sshd did not start:" >&2; cat "$tmp/sshd.log" >&2; exit 1; }
    sleep 0.1
done
echo "[127.0.0.1]:$sshd_port $(cut -d' ' -f1-2 "$tmp/host_key.pub")" >"$tmp/known_hosts"

# The fault bench's tool A settings: probe every 5 s, one local and one remote forward.
"$watchdog" --name rss --probe-interval 5s --probe-timeout 5s --probe-failures 2 \
    --state-dir "$tmp/state" --log-file "$tmp/watchdog.log" -- \
    ssh -N -T -F /dev/null -o BatchMode=yes -o ExitOnForwardFailure=yes \
    -o ServerAliveInterval=5 -o ServerAliveCountMax=2 -o ConnectTimeout=10 \
    -o StrictHostKeyChecking=yes -o "UserKnownHostsFile=$tmp/known_hosts" \
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
