#!/usr/bin/env bash
# Tests the release binary as operators run it (scripts/build.sh): on Linux with glibc it
# must be one statically linked, non-PIE executable, start, and look up host names without
# the host's NSS modules — it probes itself through "localhost" (from /etc/hosts), on
# 127.0.0.1 only. Prints one line per check and a tally line; exits non-zero on the first
# failure.
#
#   scripts/test-static.sh [BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
fail() {
  echo "static binary: FAILED: $*" >&2
  echo "static: 0 passed, 1 failed"
  exit 1
}

# The binary to test (scripts/test-all.sh passes the one it built), else built now.
BIN=${1:-$(scripts/build.sh)}
HOST=$(rustc -vV | sed -n 's/^host: //p')
if [[ $HOST == *-linux-gnu* ]]; then
  readelf -lW "$BIN" | grep -q INTERP && fail "$BIN has a program interpreter (dynamically linked)"
  readelf -dW "$BIN" | grep -q NEEDED && fail "$BIN needs shared libraries"
  readelf -hW "$BIN" | grep -q 'Type: *EXEC' || fail "$BIN is position-independent"
  echo "static binary: $BIN is statically linked and not position-independent"
fi

W=$(mktemp -d)
PID=
cleanup() {
  [[ -n $PID ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
# A free port: the exporter cannot report one it picked itself.
for _ in $(seq 20); do
  PORT=$((20000 + RANDOM % 20000))
  cat >"$W/exporter.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
mode = "scrape"
[targets.self]
url = "http://localhost:$PORT"
default_checks = false
[targets.self.checks.healthy]
path = "/-/healthy"
keyword = "Healthy"
TOML
  "$BIN" --config "$W/exporter.toml" --log-level warn >"$W/log" 2>&1 &
  PID=$!
  for _ in $(seq 50); do
    curl -fsS "http://127.0.0.1:$PORT/-/healthy" >/dev/null 2>&1 && break
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$PID" 2>/dev/null && break
  wait "$PID" 2>/dev/null || true
  PID=
  grep -q "in use" "$W/log" || fail "did not start: $(cat "$W/log")"
done
[[ -n $PID ]] || fail "no free port found"
metrics=$(curl -fsS "http://127.0.0.1:$PORT/metrics")
grep -qx 'glitchtip_up{check="healthy",target="self"} 1' <<<"$metrics" ||
  fail "probe of http://localhost:$PORT/-/healthy did not succeed: $(grep -E '^glitchtip_(up|probe_failure_reason)' <<<"$metrics")"
echo "static binary: resolved localhost and probed itself: glitchtip_up 1"
echo "static: 1 passed, 0 failed"
