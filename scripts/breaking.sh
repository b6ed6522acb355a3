#!/usr/bin/env bash
# `make breaking`: the protos must stay wire-compatible with the previous
# commit (BREAKING_AGAINST=<git ref> compares with another one, e.g. main).
# buf reads the other side straight from this repository's git objects, so
# it works in any clone; a shallow clone is deepened by one commit first.
# Rules: buf.yaml's breaking section (FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
PATH=$PWD/bin:$PATH
ref=${BREAKING_AGAINST:-HEAD~1}

has_ref() { git rev-parse --verify --quiet "$ref^{commit}" >/dev/null; }

if ! has_ref && [ "$(git rev-parse --is-shallow-repository)" = true ]; then
  echo "breaking: shallow clone without $ref; fetching one more commit"
  git fetch --quiet --deepen=1 || true
fi
if ! has_ref; then
  if [ "$ref" = HEAD~1 ] && [ -z "$(git rev-parse --verify --quiet HEAD~1)" ] &&
    [ "$(git rev-parse --is-shallow-repository)" = false ]; then
    echo "breaking: HEAD is the first commit: no previous protos to compare with, nothing to check"
    exit 0
  fi
  echo "breaking: cannot find $ref in this clone (shallow? run git fetch --deepen=1 or --unshallow, or set BREAKING_AGAINST)" >&2
  exit 1
fi
echo "buf breaking against $ref ($(git rev-parse --short "$ref"))"
buf breaking --against ".git#ref=$(git rev-parse "$ref")"
