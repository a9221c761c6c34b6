#!/usr/bin/env bash
# Takes a screenshot of the landing page with headless Chromium, so that a person can look
# at it: the exporter probes itself on 127.0.0.1 (one passing check, one failing, one TLS
# check of a port that does not speak TLS) and has a heartbeat that is never pinged, so
# it goes late after a second.
#
#   scripts/screenshot-landing.sh [OUT.png] [BINARY]
#
# Needs chromium (Debian: apt-get install chromium) and curl. Writes OUT.png (default
# target/landing.png); exits non-zero when the exporter or Chromium fails.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-target/landing.png}
BIN=${2:-target/debug/glitchtip-exporter}
[[ -n ${2:-} ]] || cargo build --quiet --bin glitchtip-exporter
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
[[ -n $CHROMIUM ]] || { echo "chromium is not installed (apt-get install chromium)" >&2; exit 1; }

W=$(mktemp -d)
PID=
cleanup() {
  [[ -n $PID ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
printf 'screenshot-token\n' >"$W/hb-token"
for _ in $(seq 20); do
  PORT=$((20000 + RANDOM % 20000))
  cat >"$W/exporter.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
state_file = "$W/state.json"
[defaults]
interval = "2s"
timeout = "1s"
retry_interval = "1s"
[targets.self]
url = "http://127.0.0.1:$PORT"
default_checks = false
[targets.self.checks.healthy]
path = "/-/healthy"
keyword = "Healthy"
[targets.self.checks.missing_page]
path = "/no-such-page"
[targets.plain]
url = "https://127.0.0.1:$PORT"
default_checks = false
[targets.plain.checks.tls]
[heartbeats.worker]
interval = "1s"
grace = "0s"
token = { file = "$W/hb-token" }
TOML
  "$BIN" --config "$W/exporter.toml" >"$W/log" 2>&1 &
  PID=$!
  for _ in $(seq 50); do
    curl -fsS "http://127.0.0.1:$PORT/-/healthy" >/dev/null 2>&1 && break
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$PID" 2>/dev/null && break
  wait "$PID" 2>/dev/null || true
  PID=
  grep -q "in use" "$W/log" || { cat "$W/log" >&2; exit 1; }
done
[[ -n $PID ]] || { echo "no free port found" >&2; exit 1; }
# A few rounds of results for the strips (interval 2 s).
sleep 9
mkdir -p "$(dirname "$OUT")"
"$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-background-networking \
  --disable-component-update --disable-sync --no-first-run --user-data-dir="$W/chromium" \
  --screenshot="$OUT" --window-size=1200,1600 "http://127.0.0.1:$PORT/" >"$W/chromium.log" 2>&1 ||
  { cat "$W/chromium.log" >&2; exit 1; }
echo "landing page: $OUT"
echo "exporter log:"
cat "$W/log"
