# A throwaway OpenSSH server on 127.0.0.1, for the demo and the measuring scripts
# (benches/idle-cpu.sh, packaging/measure-rss.sh). Source it, then:
#
#   throwaway_sshd_start DIR [CONFIG_LINE...]
#
# writes host_key, client_key(.pub), authorized_keys, sshd_config, sshd.log and
# known_hosts into DIR, starts `sshd -D -e` on a free port and waits for its banner
# (a port taken in between is retried, 5 attempts). Extra sshd_config lines come as
# arguments. Sets sshd_port, sshd_pid and made_run_sshd (1 when it created /run/sshd,
# sshd's privilege-separation directory, which the caller removes when done).
# On failure it prints why to stderr and returns 1. The caller stops sshd_pid.

sshd_bin=${sshd_bin:-/usr/sbin/sshd}
made_run_sshd=${made_run_sshd:-0}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() {
    local p
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 12000)) # below the ephemeral range ssh connects from
        port_free "$p" && { echo "$p"; return 0; }
    done
    echo "found no free port on 127.0.0.1" >&2
    return 1
}
banner_on() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && head -c 7 <&3" 2>/dev/null || true; }

throwaway_sshd_start() {
    local dir=$1 attempt up
    shift
    ssh-keygen -q -t ed25519 -N '' -C throwaway-host -f "$dir/host_key"
    ssh-keygen -q -t ed25519 -N '' -C throwaway-client -f "$dir/client_key"
    cp "$dir/client_key.pub" "$dir/authorized_keys"
    if [[ $(id -u) -eq 0 && ! -d /run/sshd ]]; then
        mkdir -m 0755 /run/sshd && made_run_sshd=1
    fi
    for attempt in 1 2 3 4 5; do
        sshd_port=$(pick_port) || return 1
        {
            cat <<EOF
ListenAddress 127.0.0.1
Port $sshd_port
HostKey "$dir/host_key"
PidFile none
AuthorizedKeysFile "$dir/authorized_keys"
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
EOF
            (($# == 0)) || printf '%s\n' "$@"
        } >"$dir/sshd_config"
        "$sshd_bin" -D -e -f "$dir/sshd_config" 2>>"$dir/sshd.log" &
        sshd_pid=$!
        up=0
        for _ in $(seq 1 100); do # at most ~10 s for its banner
            kill -0 "$sshd_pid" 2>/dev/null || break
            [[ $(banner_on "$sshd_port") == SSH-2.0 ]] && { up=1; break; }
            sleep 0.05
        done
        if [[ $up -eq 1 ]]; then
            echo "[127.0.0.1]:$sshd_port $(cut -d' ' -f1,2 "$dir/host_key.pub")" >"$dir/known_hosts"
            return 0
        fi
        kill "$sshd_pid" 2>/dev/null || true
        wait "$sshd_pid" 2>/dev/null || true
        sshd_pid=''
    done
    echo "sshd did not start; its log:" >&2
    tail -n 5 "$dir/sshd.log" >&2
    return 1
}
