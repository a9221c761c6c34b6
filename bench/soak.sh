#!/usr/bin/env bash
# Soak: 1,000 checks against local targets — healthy, slow, failing and hostile — for a
# while (10 minutes by default), printing the exporter's RSS, open descriptors, runtime
# tasks, threads and schedule lag at the start and end of the window (and every minute).
# In a healthy exporter every figure is flat. Not part of the test suite (it takes minutes).
#
#   bash bench/soak.sh                      10 min after a 60 s warm-up, release binary
#   bash bench/soak.sh --seconds 120        a shorter window
#   bash bench/soak.sh --binary PATH        an already built binary
#
# Targets (bench/soak_targets.py, python3 stdlib, 127.0.0.1 only): 250 targets with the
# default checks over http (4 checks each): 100 answer like GlitchTip, 50 answer after 3 s,
# 50 answer 500, 50 misbehave (endless body, headers dripped a byte a second, garbage, a
# closed connection, no answer at all — in turn). Every loop is bounded; every process
# started here is ended by its PID.
set -euo pipefail

SECONDS_RUN=600
WARMUP=60
BINARY=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) SECONDS_RUN="$2"; shift ;;
    --warmup) WARMUP="$2"; shift ;;
    --binary) BINARY="$2"; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d /tmp/glitchtip-soak.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT

[[ -n $BINARY ]] || BINARY=$("$ROOT/scripts/build.sh")

python3 "$ROOT/bench/soak_targets.py" "$W/ports" &
PIDS+=($!)
for _ in $(seq 100); do [[ -s $W/ports ]] && break; sleep 0.1; done
read -r HEALTHY SLOW FAILING HOSTILE <"$W/ports"

{
  echo '[server]'
  echo 'listen = "127.0.0.1:0"'
  for i in $(seq 0 249); do
    if ((i < 100)); then port=$HEALTHY; elif ((i < 150)); then port=$SLOW
    elif ((i < 200)); then port=$FAILING; else port=$HOSTILE; fi
    printf '[targets.t%03d]\nurl = "http://127.0.0.1:%s"\n' "$i" "$port"
  done
} >"$W/exporter.toml"

# The exporter picks its port; read it from the log line that names the address.
"$BINARY" --config "$W/exporter.toml" --log-format json --log-level info >"$W/exporter.log" 2>&1 &
EXPORTER=$!
PIDS+=($EXPORTER)
ADDR=""
for _ in $(seq 100); do
  ADDR=$(grep -o '"listen":"127.0.0.1:[0-9]*"' "$W/exporter.log" | head -1 | cut -d'"' -f4 || true)
  [[ -n $ADDR ]] && break
  sleep 0.1
done
[[ -n $ADDR ]] || { echo "the exporter did not start:" >&2; tail -20 "$W/exporter.log" >&2; exit 1; }

metric() { curl -sf "http://$ADDR/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
lag_buckets() { curl -sf "http://$ADDR/metrics" | awk '/^glitchtip_exporter_schedule_lag_seconds_(bucket|count)/ { print $1, $2 }'; }
sample() { # LABEL
  local rss fds tasks threads
  rss=$(awk '$1 == "VmRSS:" { printf "%.1f", $2 / 1024 }' "/proc/$EXPORTER/status")
  threads=$(awk '$1 == "Threads:" { print $2 }' "/proc/$EXPORTER/status")
  fds=$(find "/proc/$EXPORTER/fd" -mindepth 1 -maxdepth 1 | wc -l)
  tasks=$(metric glitchtip_exporter_tasks)
  printf '%-8s %10s %8s %8s %8s\n' "$1" "$rss" "$fds" "${tasks:-?}" "$threads"
}
# Start lag over a window, from two readings of the histogram: starts, p50, p99, > 1 s.
lag_window() { # BEFORE AFTER
  join <(sort "$1") <(sort "$2") | awk '
    { d = $3 - $2; if ($1 ~ /_count$/) { total = d; next }
      match($1, /le="[^"]*"/); le = substr($1, RSTART + 4, RLENGTH - 5); n++; les[n] = le; cum[n] = d }
    END {
      # buckets come sorted as text: order them numerically
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) {
        a = (les[i] == "+Inf") ? 1e99 : les[i] + 0; b = (les[j] == "+Inf") ? 1e99 : les[j] + 0
        if (b < a) { t = les[i]; les[i] = les[j]; les[j] = t; t = cum[i]; cum[i] = cum[j]; cum[j] = t } }
      p50 = ""; p99 = ""; over = total
      for (i = 1; i <= n; i++) {
        if (p50 == "" && cum[i] >= total * 0.5) p50 = les[i]
        if (p99 == "" && cum[i] >= total * 0.99) p99 = les[i]
        if (les[i] == "1") over = total - cum[i]
      }
      printf "starts %d, p50 <= %s s, p99 <= %s s, later than 1 s: %d\n", total, p50, p99, over }'
}

echo "exporter on $ADDR (pid $EXPORTER), 1,000 checks; warm-up ${WARMUP}s, window ${SECONDS_RUN}s" >&2
sleep "$WARMUP"
printf '%-8s %10s %8s %8s %8s\n' when "rss_MiB" fds tasks threads
sample start
lag_buckets >"$W/lag.start"
elapsed=0
while ((elapsed + 60 < SECONDS_RUN)); do
  sleep 60
  elapsed=$((elapsed + 60))
  sample "+${elapsed}s"
done
sleep $((SECONDS_RUN - elapsed))
sample end
lag_buckets >"$W/lag.end"
echo "schedule lag over the window: $(lag_window "$W/lag.start" "$W/lag.end")"
echo "checks down at the end: $(curl -sf "http://$ADDR/metrics" | grep -c '^glitchtip_up{.*} 0$') of 1000 (expected 400: the failing and hostile targets; slow ones answer within the 5 s timeout)"
kill -0 "$EXPORTER" || { echo "the exporter died" >&2; exit 1; }
