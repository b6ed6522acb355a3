#!/usr/bin/env bash
# Starts the whole suite in the foreground: a private redis-server with AOF in
# a temporary directory when REDIS_URL is unset, a private PostgreSQL when
# DATABASE_URL is unset (each on a free port, and used only once it proves to
# be the server this script started), then registry, ingestion, delivery and
# gateway, all honouring the environment (see README). Ctrl-C or SIGTERM
# stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/bin}
pids=()
tmp=$(mktemp -d -t voxscriber-run.XXXXXX)
pg_tmp=      # the private PostgreSQL's directory, once one runs
pg_as=()     # how to run PostgreSQL's programs (they refuse to run as root)
pg_bin=

cleanup() {
  trap - INT TERM EXIT
  echo "stopping..." >&2
  for ((i=${#pids[@]}-1; i>=0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  stop_postgres
  rm -rf "$tmp"
}
trap cleanup INT TERM EXIT

# Ports for the private servers: REDIS_PORT / PG_PORT first when set, then
# random ones below Linux's ephemeral range (where the OS picks ports for
# clients and for listeners on port 0). A port something already answers on
# is skipped; the race between that check and the server's bind is closed by
# checking, after the start, that the server answering is ours.
candidate_ports() {
  [[ -n "${1:-}" ]] && echo "$1"
  for _ in $(seq 30); do echo $((20000 + RANDOM % 12000)); done
}
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_redis exports REDIS_URL of a redis-server this script started: the
# server answering on the port must report our process's pid.
start_redis() {
  local port pid answer
  for port in $(candidate_ports "${REDIS_PORT:-}"); do
    port_in_use "$port" && continue
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly yes --appendfsync always \
      --maxmemory-policy noeviction \
      --dir "$tmp" --pidfile "$tmp/redis.pid" --logfile "$tmp/redis.log" --daemonize no &
    pid=$!
    for _ in $(seq 100); do
      answer=$(redis-cli -h 127.0.0.1 -p "$port" info server 2>/dev/null | tr -d '\r' | sed -n 's/^process_id://p') || true
      if [[ "$answer" == "$pid" ]]; then
        pids+=("$pid")
        export REDIS_URL="redis://127.0.0.1:$port/0"
        echo "redis-server (AOF, appendfsync always; pid $pid) in $tmp at $REDIS_URL" >&2
        return 0
      fi
      kill -0 "$pid" 2>/dev/null || break # it exited: the port was taken after all
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "redis-server did not serve on port $port (taken?); trying another" >&2
  done
  echo "could not start a private redis-server; its log:" >&2
  cat "$tmp/redis.log" >&2 || true
  return 1
}

# pg_find_bin prints the directory of initdb and pg_ctl: the one on PATH,
# else the newest Debian/Ubuntu install (/usr/lib/postgresql/<version>/bin).
pg_find_bin() {
  local d
  if d=$(command -v initdb 2>/dev/null); then
    d=$(dirname "$(readlink -f "$d")")
    [[ -x "$d/pg_ctl" ]] && { echo "$d"; return 0; }
  fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [[ -x "$d/initdb" && -x "$d/pg_ctl" ]] && { echo "$d"; return 0; }
  done
  return 1
}

# pg runs one of PostgreSQL's programs (as the postgres user when we are
# root, from / so that user can read its working directory).
pg() {
  local prog=$1
  shift
  (cd / && "${pg_as[@]}" "$pg_bin/$prog" "$@")
}

# start_postgres exports DATABASE_URL of a PostgreSQL this script started
# (fsync on; unix socket in its own directory; TCP on 127.0.0.1 only), with
# a database "webhooks": the server answering on the port must report our
# data directory.
start_postgres() {
  local port dir
  if ! pg_bin=$(pg_find_bin); then
    echo "PostgreSQL not found (apt-get install postgresql): no private PostgreSQL, DATABASE_URL stays unset" >&2
    return 0
  fi
  dir=$(mktemp -d -t voxscriber-pg.XXXXXX)
  if [[ $(id -u) == 0 ]]; then
    chown postgres: "$dir"
    pg_as=(runuser -u postgres --)
  fi
  if ! pg initdb -D "$dir/data" -A trust -U postgres --no-sync >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2
    rm -rf "$dir"
    return 1
  fi
  pg_tmp=$dir
  for port in $(candidate_ports "${PG_PORT:-}"); do
    port_in_use "$port" && continue
    if pg pg_ctl -D "$dir/data" -o "-p $port -k $dir -c listen_addresses=127.0.0.1" -l "$dir/log" -w -t 60 start >/dev/null 2>&1; then
      if [[ "$(pg psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -XAtqc 'SHOW data_directory' 2>/dev/null)" == "$dir/data" ]] &&
        pg psql -h "$dir" -p "$port" -U postgres -d postgres -XAtqc 'CREATE DATABASE webhooks' >/dev/null; then
        export DATABASE_URL="postgres://postgres@127.0.0.1:$port/webhooks?sslmode=disable"
        echo "postgres (fsync on) in $dir at $DATABASE_URL" >&2
        return 0
      fi
      pg pg_ctl -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    echo "postgres did not serve on port $port (taken?); trying another" >&2
  done
  echo "could not start a private PostgreSQL; its log:" >&2
  cat "$dir/log" >&2 || true
  return 1
}

stop_postgres() {
  [[ -n "$pg_tmp" ]] || return 0
  if [[ -f "$pg_tmp/data/postmaster.pid" ]]; then
    pg pg_ctl -D "$pg_tmp/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$pg_tmp"
  pg_tmp=
}

if [[ -z "${REDIS_URL:-}" ]]; then
  start_redis
fi
if [[ -z "${DATABASE_URL:-}" ]]; then
  start_postgres
fi

# Development defaults: only what is unset. Never use these in production.
export DEV_MODE=${DEV_MODE:-true}
export ADMIN_TOKEN=${ADMIN_TOKEN:-dev-admin-token}
export PRODUCER_TOKEN=${PRODUCER_TOKEN:-dev-producer-token}
export ENDPOINT_ALLOW_HTTP=${ENDPOINT_ALLOW_HTTP:-true}
export ENDPOINT_ALLOWED_CIDRS=${ENDPOINT_ALLOWED_CIDRS:-127.0.0.0/8,::1/128}
# The internal RPCs (signing secrets, scheduling) are never open: unless
# INTERNAL_TOKEN is set, every run makes a fresh random one, known only to
# the processes started here.
if [[ -z "${INTERNAL_TOKEN:-}" ]]; then
  INTERNAL_TOKEN=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
fi
export INTERNAL_TOKEN

for svc in registry ingestion delivery gateway; do
  "$BIN/$svc" &
  pids+=($!)
done
echo "suite running: REST on ${GATEWAY_ADDR:-:8080} (ADMIN_TOKEN=$ADMIN_TOKEN PRODUCER_TOKEN=$PRODUCER_TOKEN); Ctrl-C stops it" >&2
# Exit (and stop the rest) as soon as any process ends.
wait -n "${pids[@]}"
