#!/usr/bin/env bash
# Builds the release binary (scripts/build.sh; quick when up to date) and runs it with the
# given arguments, e.g. scripts/run.sh --target https://glitchtip.example.com
set -euo pipefail
BIN=$("$(dirname "$0")/build.sh")
exec "$BIN" "$@"
