#!/usr/bin/env bash
# The .deb round trip, for real, on this machine (run as root; CI calls it from .ci/run):
# build the package, dpkg -i it, use what it installed, then dpkg -r / dpkg -P it and
# check that nothing it brought is left behind and that it created nothing else.
#
#   bash packaging/ci-deb.sh
#
# Needs: cargo, dpkg, dpkg-dev (dpkg-shlibdeps), man-db, python3, lintian (skipped with a
# message if absent, a failure under CI=true).
# A tunnelctl package that is already installed is refused, unless CI=true (then it is
# purged first: CI machines are ours).
set -euo pipefail
cd "$(dirname "$0")/.."

PKG=tunnelctl
EXAMPLE=/usr/share/doc/tunnelctl/examples/tunnels.yaml
# Places tunnelctl or tunnel-watchdog may write at run time: the package itself must not
# create them (it starts nothing and has no maintainer scripts).
RUNTIME_DIRS=(/etc/tunnelctl /var/lib/tunnelctl /run/tunnelctl /var/log/tunnelctl)

step() { printf '\n== ci-deb: %s\n' "$*"; }
fail() { printf 'ci-deb: FAIL: %s\n' "$*" >&2; exit 1; }
# Known to dpkg in any state but not-installed (config-files counts: -P must clear it).
installed() {
  local status
  status=$(dpkg-query -W -f='${db:Status-Status}' "$PKG" 2>/dev/null) || return 1
  [ -n "$status" ] && [ "$status" != not-installed ]
}

[ "$(id -u)" = 0 ] || fail "run as root: it installs and removes the package for real"
for tool in dpkg dpkg-deb man python3 cargo; do
  command -v "$tool" >/dev/null || fail "$tool is missing (apt-get install man-db python3)"
done
if grep -rqs '^path-exclude=/usr/share/man' /etc/dpkg/dpkg.cfg.d/; then
  fail "dpkg is set to drop man pages (path-exclude in /etc/dpkg/dpkg.cfg.d/); the man checks cannot pass here"
fi

if installed; then
  if [ "${CI:-}" = true ]; then
    step "purging a $PKG left installed by an earlier run"
    dpkg -P "$PKG" >/dev/null
  else
    fail "$PKG is already installed; this script would remove it (run with CI=true to allow that)"
  fi
fi
# What those places hold now (other tests may have made them): it must not change.
runtime_snapshot() {
  local dir
  for dir in "${RUNTIME_DIRS[@]}"; do
    if [ -e "$dir" ]; then find "$dir" -printf '%p %y %m %s\n' | sort; else echo "$dir absent"; fi
  done
}
runtime_before=$(runtime_snapshot)

step "building the package"
deb=$(bash packaging/build-deb.sh)
[ -f "$deb" ] || fail "build-deb.sh printed '$deb', which is not a file"
echo "$deb"

step "dependencies"
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
for dep in libc6 openssh-client; do
  printf '%s\n' "$depends" | grep -Eq "(^|, )$dep( |,|$)" || fail "Depends: lacks $dep"
done

step "no maintainer scripts (the package starts nothing)"
scripts=$(dpkg-deb --ctrl-tarfile "$deb" | tar -t | sed 's|^\./||' | grep -Ev '^(|control|md5sums|conffiles)$' || true)
[ -z "$scripts" ] || fail "unexpected control files: $scripts"

if command -v lintian >/dev/null; then
  step "lintian (errors fail; initial-upload-closes-no-bugs is about Debian's archive, not us)"
  lint=$(lintian --suppress-tags initial-upload-closes-no-bugs "$deb" 2>/dev/null || true)
  printf '%s\n' "$lint"
  if printf '%s\n' "$lint" | grep -q '^E: '; then fail "lintian reports errors"; fi
elif [[ ${CI:-} == true ]]; then
  fail "lintian is missing on CI (.ci/run installs it): the .deb went unchecked"
else
  echo "SKIPPED lintian: not installed (apt-get install lintian)"
fi

# Every path the package ships, and which of them existed before (shared directories
# such as /usr/share/man/man1 do; they must survive, the others must go).
mapfile -t shipped < <(dpkg-deb --fsys-tarfile "$deb" | tar -t | sed 's|^\./|/|; s|/$||' | grep -v '^/\?$')
declare -A existed=()
for path in "${shipped[@]}"; do
  if [ -e "$path" ] || [ -L "$path" ]; then existed[$path]=1; fi
done
for path in "${shipped[@]}"; do
  if [ ! -d "$path" ] && [ -n "${existed[$path]:-}" ]; then
    fail "$path exists before installing; it belongs to something else"
  fi
done

cleanup() { if installed; then dpkg -P "$PKG" >/dev/null 2>&1 || true; fi; }
trap cleanup EXIT

step "dpkg -i"
dpkg -i "$deb"

step "what dpkg says it installed matches the package"
mapfile -t listed < <(dpkg -L "$PKG" | grep -v '^/\.$')
missing=$(comm -23 <(printf '%s\n' "${shipped[@]}" | sort -u) <(printf '%s\n' "${listed[@]}" | sort -u))
[ -z "$missing" ] || fail "in the .deb but not in dpkg -L: $missing"
for path in "${listed[@]}"; do
  [ -e "$path" ] || fail "dpkg -L lists $path but it does not exist"
done

step "tunnelctl --version"
[ "$(command -v tunnelctl)" = /usr/bin/tunnelctl ] || fail "tunnelctl resolves to $(command -v tunnelctl), not /usr/bin/tunnelctl"
version=$(tunnelctl --version)
echo "$version"
expected_version=$(dpkg-query -W -f='${Version}' "$PKG")
[ "$version" = "tunnelctl ${expected_version%-*}" ] || fail "tunnelctl --version says '$version', package is $expected_version"
[ -x /usr/bin/tunnel-watchdog ] || fail "/usr/bin/tunnel-watchdog is missing"
# Static (Cargo.toml, profile release-static): no libc.so mapped, for its memory footprint.
# (readelf comes with binutils, which dpkg-dev depends on.)
! readelf -lW /usr/bin/tunnel-watchdog | grep -q 'program interpreter' ||
  fail "/usr/bin/tunnel-watchdog is dynamically linked; build-deb.sh builds it static"
tunnel-watchdog --version

step "tunnelctl check on the installed example"
tunnelctl --config "$EXAMPLE" check

step "man -w"
for page in tunnelctl tunnel-watchdog "5 tunnels.yaml"; do
  # shellcheck disable=SC2086 # "5 tunnels.yaml" is section and name
  where=$(man -w $page) || fail "man -w $page found nothing"
  echo "$page -> $where"
  case "$where" in /usr/share/man/*) ;; *) fail "man -w $page found $where, not the packaged page" ;; esac
done

step "every installed man page renders without warnings"
for page in $(printf '%s\n' "${listed[@]}" | grep '^/usr/share/man/man[0-9]/'); do
  [ -f "$page" ] || continue
  warnings=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
  [ -z "$warnings" ] || fail "$page: $warnings"
  echo "$page: ok"
done

step "a rendered unit runs the installed watchdog"
# The first tunnel of the example (override with TUNNEL=NAME).
tunnel=${TUNNEL:-$(awk '/^tunnels:/ {t=1; next} t && /^[^ #]/ {exit} t && match($0, /^  [^ #:][^:]*:/) {print substr($0, 3, RLENGTH-3); exit}' "$EXAMPLE")}
[ -n "$tunnel" ] || fail "found no tunnel name in $EXAMPLE"
unit=$(tunnelctl --config "$EXAMPLE" render "$tunnel" --target systemd)
printf '%s\n' "$unit"
exec_start=$(printf '%s\n' "$unit" | grep '^ExecStart=' || true)
[ "$(printf '%s\n' "$exec_start" | grep -c .)" = 1 ] || fail "expected one ExecStart= line, got: $exec_start"
# ExecStart=[prefixes]PATH ... where PATH may be quoted.
printf '%s\n' "$exec_start" | grep -Eq '^ExecStart=[-@:+!]*"?/usr/bin/tunnel-watchdog"?( |$)' ||
  fail "ExecStart= does not run /usr/bin/tunnel-watchdog: $exec_start"

step "completions load"
bash -c 'source /usr/share/bash-completion/completions/tunnelctl && complete -p tunnelctl' ||
  fail "the bash completion does not register for tunnelctl"
# The completion function must offer the commands.
offered=$(bash -c 'source /usr/share/bash-completion/completions/tunnelctl
  COMP_WORDS=(tunnelctl "") COMP_CWORD=1 COMP_LINE="tunnelctl " COMP_POINT=10
  _tunnelctl tunnelctl "" tunnelctl; printf "%s\n" "${COMPREPLY[@]}"')
for cmd in check render install uninstall; do
  printf '%s\n' "$offered" | grep -qx "$cmd" || fail "bash completion does not offer '$cmd' (offered: $offered)"
done
[ -s /usr/share/zsh/vendor-completions/_tunnelctl ] || fail "zsh completion missing"
[ -s /usr/share/fish/vendor_completions.d/tunnelctl.fish ] || fail "fish completion missing"
if command -v zsh >/dev/null; then zsh -n /usr/share/zsh/vendor-completions/_tunnelctl; fi
if command -v fish >/dev/null; then fish -n /usr/share/fish/vendor_completions.d/tunnelctl.fish; fi

[ "$(runtime_snapshot)" = "$runtime_before" ] ||
  fail "installing or using the package changed ${RUNTIME_DIRS[*]}: $(diff <(echo "$runtime_before") <(runtime_snapshot) || true)"

step "dpkg -r, then dpkg -P"
dpkg -r "$PKG"
for path in "${listed[@]}"; do
  if [ ! -d "$path" ] && { [ -e "$path" ] || [ -L "$path" ]; }; then
    fail "$path is still there after dpkg -r"
  fi
done
dpkg -P "$PKG"
trap - EXIT
if installed; then fail "dpkg still knows $PKG after dpkg -P: $(dpkg-query -W -f='${db:Status-Abbrev}' "$PKG")"; fi

step "nothing left behind"
left=()
for path in "${shipped[@]}"; do
  if [ -z "${existed[$path]:-}" ] && { [ -e "$path" ] || [ -L "$path" ]; }; then left+=("$path"); fi
done
if [ "$(runtime_snapshot)" != "$runtime_before" ]; then
  left+=("changes under ${RUNTIME_DIRS[*]}: $(diff <(echo "$runtime_before") <(runtime_snapshot) || true)")
fi
[ ${#left[@]} = 0 ] || fail "left behind: ${left[*]}"
echo "ci-deb: ${#shipped[@]} paths installed and removed; nothing left behind"
echo "ci-deb: 1 passed, 0 failed"
