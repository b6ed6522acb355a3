#!/usr/bin/env bash
# Starts the whole suite in the foreground: a private redis-server with AOF in
# a temporary directory when REDIS_URL is unset, then registry, ingestion,
# delivery and gateway, all honouring the environment (see README). Ctrl-C or
# SIGTERM stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/bin}
pids=()
tmp=$(mktemp -d -t voxscriber-run.XXXXXX)

cleanup() {
  trap - INT TERM EXIT
  echo "stopping..." >&2
  for ((i=${#pids[@]}-1; i>=0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup INT TERM EXIT

if [[ -z "${REDIS_URL:-}" ]]; then
  port=${REDIS_PORT:-6390}
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly yes --appendfsync always \
    --dir "$tmp" --pidfile "$tmp/redis.pid" --logfile "$tmp/redis.log" --daemonize no &
  pids+=($!)
  export REDIS_URL="redis://127.0.0.1:$port/0"
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  echo "redis-server (AOF, appendfsync always) in $tmp at $REDIS_URL" >&2
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
