# shellcheck shell=bash
# Sourced by the scripts that fetch Debian packages with a private apt configuration
# (check-targets.sh, cross-build.sh), never run:
#
#   debian_mirror
#
# prints the Debian mirror this machine's own apt uses: CHECK_TARGETS_MIRROR when set,
# else the first non-security URI of /etc/apt/sources.list.d/debian.sources (deb822), else
# the first `deb` line of /etc/apt/sources.list. A machine that names none is told how to
# name one, rather than sent to a mirror it may not reach.
debian_mirror() {
    local mirror=${CHECK_TARGETS_MIRROR:-}
    if [[ -z $mirror ]]; then
        mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' \
            /etc/apt/sources.list.d/debian.sources 2>/dev/null | grep -v -- -security | head -n1)
    fi
    if [[ -z $mirror ]]; then
        mirror=$(sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*\).*/\2/p' \
            /etc/apt/sources.list 2>/dev/null | grep -v -- -security | head -n1)
    fi
    if [[ -z $mirror ]]; then
        echo "no Debian mirror found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list; name one with CHECK_TARGETS_MIRROR=URI" >&2
        return 1
    fi
    printf '%s\n' "$mirror"
}
