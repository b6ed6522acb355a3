#!/usr/bin/env bash
# Builds Jaeger v2 (all-in-one, in-memory storage by default) into
# .cache/jaeger for the trace tests, with the recipe of STYLE.md: `go
# install` is refused (the module has replace directives), so the module
# is downloaded, copied somewhere writable and built there (≈ 6 min once).
set -euo pipefail
cd "$(dirname "$0")/.."
version=${JAEGER_VERSION:-v1.76.0}
out=$PWD/.cache/jaeger
src=$PWD/.cache/jaeger-src
mkdir -p .cache
dir=$(GOWORK=off go mod download -json "github.com/jaegertracing/jaeger@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
test -n "$dir" || { echo "jaeger: go mod download gave no module directory" >&2; exit 1; }
rm -rf "$src"
cp -r "$dir" "$src"
chmod -R u+w "$src"
cd "$src"
GOWORK=off GOFLAGS=-mod=mod go build -o "$out.tmp" ./cmd/jaeger
mv "$out.tmp" "$out"
echo "built $out ($version)"
