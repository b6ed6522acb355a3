#!/usr/bin/env bash
# What `make test` needs before any test runs. Machine-level programs
# (apt packages) are checked and, when missing, named with the one command
# that installs them; the run stops at once. What the repository can build
# itself is prepared here: the dashboard's browser-test node_modules
# (npm ci when absent or stale against package-lock.json). The Jaeger
# binary is a separate make prerequisite (`make jaeger`, cached in .cache/).
#
#   scripts/test-prereqs.sh        everything make test needs
#   scripts/test-prereqs.sh node   node, npm and node_modules only (make lint's eslint)
#
# A test that finds a prerequisite missing fails rather than skips, so a
# `make test` that passes has run every test (see scripts/noskip.go).
set -euo pipefail
cd "$(dirname "$0")/.."

# PostgreSQL server binaries (initdb, pg_ctl, postgres) of whatever major
# version Debian installed: found through the package's file list, as
# tests and `make run` find them (STYLE.md), never a hard-coded version.
pg_bindir() {
  command -v dpkg-query >/dev/null || return 1
  local pkg
  for pkg in $(dpkg-query -W -f '${db:Status-Abbrev} ${Package}\n' 'postgresql-[0-9]*' 2>/dev/null |
    awk '$1 == "ii" && $2 ~ /^postgresql-[0-9]+$/ {print $2}' | sort -t- -k2 -n -r); do
    local initdb
    initdb=$(dpkg -L "$pkg" 2>/dev/null | grep '/bin/initdb$' | head -n 1)
    if [ -n "$initdb" ] && [ -x "$initdb" ] && [ -x "$(dirname "$initdb")/pg_ctl" ]; then
      dirname "$initdb"
      return 0
    fi
  done
  return 1
}
mode=${1:-all}
missing=()
need() { # need <what> <install command>
  missing+=("missing $1: run $2")
}

command -v node >/dev/null || need node "apt-get install -y nodejs npm"
command -v npm >/dev/null || need npm "apt-get install -y npm"
if [ "$mode" = all ]; then
  command -v redis-server >/dev/null || need redis-server "apt-get install -y redis-server"
  command -v redis-cli >/dev/null || need redis-cli "apt-get install -y redis-server"
  # e2e/browser_e2e_test.go drives exactly this binary.
  [ -x /usr/bin/chromium ] || need /usr/bin/chromium "apt-get install -y chromium"
  # pkg/ssrf resolves "localhost" with the system resolver.
  getent hosts localhost >/dev/null || need "a localhost entry in /etc/hosts" "echo '127.0.0.1 localhost' >>/etc/hosts"

  pg_bindir >/dev/null || need "PostgreSQL server binaries (initdb, pg_ctl)" "apt-get install -y postgresql"
fi

if [ ${#missing[@]} -gt 0 ]; then
  printf '%s\n' "${missing[@]}" >&2
  echo "make test and make lint need these (.ci/run installs them all)" >&2
  exit 1
fi

# npm ci when node_modules is absent or was installed from another lockfile.
# The lockfile's hash is recorded inside node_modules after a successful ci.
browser=e2e/browser
stamp=$browser/node_modules/.package-lock.sha256
want=$(sha256sum "$browser/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "npm ci in $browser (node_modules absent or stale against package-lock.json)"
  (cd "$browser" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" >"$stamp"
fi
