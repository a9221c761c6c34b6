#!/usr/bin/env bash
# Side-by-side benchmark: glitchtip-exporter against Debian's prometheus-blackbox-exporter,
# on this machine, in one run.
#
#   bash bench/run.sh            full run: 20,000 probes per exporter and scheme, interval
#                                mode at 1,000 checks (75 s) and 10,000 checks (11 min soak)
#   bash bench/run.sh --quick    short run that only proves the script works (< 1 min once
#                                built): 500 probes, 200 and 1,000 checks at 5 s for 12 s
#
# Options: --probes N, --concurrency C, --checks N (the large interval run), --soak SECONDS,
# --keep (keep the work folder with logs and configs).
#
# Runs on a fresh Debian machine as root with Rust installed: installs
# prometheus-blackbox-exporter, nginx and openssl when missing (with their services kept
# from starting), builds the release binary as operators run it (scripts/build.sh: static,
# not position-independent) and the load generator (examples/loadgen.rs),
# then:
#   - nginx serves HTTP and HTTPS (a CA and certificate made now with openssl) on 127.0.0.1,
#     body `ok`, and the GlitchTip endpoints the default checks read;
#   - each exporter runs pinned to CPU 0 (nginx and the load generator to CPU 1), so that
#     both are measured on one core; the same number of probes goes through each — blackbox
#     via /probe?target=URL&module=…, ours via /probe?target=NAME — HTTP and HTTPS apart,
#     both checking status 200 and the body, both verifying the chain against the CA;
#   - CPU is each exporter's own utime+stime from /proc/PID/stat, memory its VmRSS (idle)
#     and VmHWM (peak), never the load generator's;
#   - interval mode (ours only: blackbox has none) runs N checks (the default checks of
#     N/5 https targets) at a 60 s interval on CPU 0, and reports /metrics answer time and
#     size, the schedule lag from glitchtip_exporter_schedule_lag_seconds, the gaps between
#     requests of each check in nginx's access log, CPU and RSS over time.
# Every request goes to 127.0.0.1; every loop is bounded in count and time.
set -euo pipefail

QUICK=0
PROBES=20000
CONCURRENCY=32
CHECKS=10000
SOAK=660
KEEP=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --probes) PROBES="$2"; shift ;;
    --concurrency) CONCURRENCY="$2"; shift ;;
    --checks) CHECKS="$2"; shift ;;
    --soak) SOAK="$2"; shift ;;
    --keep) KEEP=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
SMALL=1000
INTERVAL=60
SMALL_RUN=75
if [[ $QUICK == 1 ]]; then
  PROBES=500 CHECKS=1000 SMALL=200 INTERVAL=5 SMALL_RUN=12 SOAK=12
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d /tmp/glitchtip-bench.XXXXXX)
chmod 755 "$W"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [[ $KEEP == 1 ]]; then echo "work folder kept: $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT
log() { printf '\n== %s\n' "$*" >&2; }

# --- what the run needs ---------------------------------------------------------------
install_deps() {
  local missing=()
  command -v prometheus-blackbox-exporter >/dev/null || missing+=(prometheus-blackbox-exporter)
  command -v nginx >/dev/null || missing+=(nginx)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v taskset >/dev/null || missing+=(util-linux)
  [[ ${#missing[@]} == 0 ]] && return
  log "installing ${missing[*]}"
  # Keep the packages' services from starting (nothing of theirs may listen on 9115 or 80).
  local made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2 || {
    [[ $made_policy == 1 ]] && rm -f /usr/sbin/policy-rc.d
    exit 1
  }
  [[ $made_policy == 1 ]] && rm -f /usr/sbin/policy-rc.d
  for service in prometheus-blackbox-exporter nginx; do
    systemctl stop "$service" 2>/dev/null || service "$service" stop 2>/dev/null || true
  done
}
install_deps

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
log "building the release binary as operators run it (scripts/build.sh) and the load generator ($CARGO_TARGET_DIR)"
OURS_BIN=$("$ROOT/scripts/build.sh")
(cd "$ROOT" && cargo build --release --locked --example loadgen >&2)
LOADGEN=$CARGO_TARGET_DIR/release/examples/loadgen
BLACKBOX_BIN=$(command -v prometheus-blackbox-exporter)
# The load generator and nginx on CPU 1 when there is one, the exporters on CPU 0.
if [[ $(nproc) -ge 2 ]]; then SIDE=(taskset -c 1); else SIDE=(); fi
EXPORTER_CPU=(taskset -c 0)

port() { "${SIDE[@]}" "$LOADGEN" port; }
cpu_ms() { # utime + stime of PID, in ms
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); split($0, f, " "); print (f[12] + f[13]) * 1000 / hz }' "/proc/$1/stat"
}
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
mib() { awk -v kb="$1" 'BEGIN { printf "%.1f", kb / 1024 }'; }
field() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k { print $2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }
started() { # NAME URL: waits until URL answers 200, or fails
  "${SIDE[@]}" "$LOADGEN" wait --url "$2" --timeout-seconds 60 || {
    echo "$1 did not start; its log:" >&2
    tail -20 "$W/$1.log" >&2
    exit 1
  }
}

# --- targets: nginx with a certificate made now ---------------------------------------
log "certificates and nginx on 127.0.0.1"
(
  cd "$W"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
    -keyout ca.key -out ca.pem -subj "/CN=glitchtip-exporter bench CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout server.key -out server.csr -subj "/CN=127.0.0.1" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' >server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 7 \
    -extfile server.ext -out server.pem 2>/dev/null
)
HTTP_PORT=$(port)
HTTPS_PORT=$(port)
mkdir -p "$W/nginx-tmp"
cat >"$W/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $W/nginx.pid;
error_log $W/nginx-error.log warn;
events { worker_connections 8192; }
http {
  client_body_temp_path $W/nginx-tmp;
  proxy_temp_path $W/nginx-tmp;
  fastcgi_temp_path $W/nginx-tmp;
  uwsgi_temp_path $W/nginx-tmp;
  scgi_temp_path $W/nginx-tmp;
  log_format bench '\$msec \$http_x_bench_check \$uri \$status';
  access_log off;
  # Full handshakes for both exporters.
  ssl_session_cache off;
  ssl_session_tickets off;
  server {
    listen 127.0.0.1:$HTTP_PORT;
    listen 127.0.0.1:$HTTPS_PORT ssl;
    ssl_certificate $W/server.pem;
    ssl_certificate_key $W/server.key;
    default_type text/plain;
    location = /ok { return 200 'ok'; }
    # What the default checks of a GlitchTip target read.
    location = /_health/ { access_log $W/access.log bench buffer=256k flush=1s; return 200 'ok'; }
    location = /api/settings/ { access_log $W/access.log bench buffer=256k flush=1s; default_type application/json; return 200 '{"version":"4.2.10"}'; }
    location = /api/0/organizations/ { access_log $W/access.log bench buffer=256k flush=1s; return 401 '{"detail":"Authentication credentials were not provided."}'; }
    location = / { access_log $W/access.log bench buffer=256k flush=1s; return 200 '<title>GlitchTip</title>'; }
  }
}
EOF
"${SIDE[@]}" nginx -c "$W/nginx.conf" -p "$W" >"$W/nginx.log" 2>&1 &
PIDS+=($!)
started nginx "http://127.0.0.1:$HTTP_PORT/ok"

# --- /probe: the same probes through both exporters -------------------------------------
OURS_PORT=$(port)
BB_PORT=$(port)
cat >"$W/ours.toml" <<EOF
[server]
listen = "127.0.0.1:$OURS_PORT"
# No probes of its own: only the /probe requests run probes.
mode = "scrape"
# Every concurrent request of the load generator is a probe (the default bound is 64).
max_concurrent_probes = 1024
[defaults]
timeout = "5s"
[targets.http]
url = "http://127.0.0.1:$HTTP_PORT"
default_checks = false
[targets.http.checks.ok]
path = "/ok"
expect_status = [200]
keyword = "ok"
[targets.https]
url = "https://127.0.0.1:$HTTPS_PORT"
default_checks = false
tls = { ca_file = "$W/ca.pem" }
[targets.https.checks.ok]
path = "/ok"
expect_status = [200]
keyword = "ok"
EOF
cat >"$W/blackbox.yml" <<EOF
modules:
  http_ok:
    prober: http
    timeout: 5s
    http:
      valid_status_codes: [200]
      fail_if_body_not_matches_regexp: ["ok"]
      preferred_ip_protocol: ip4
      tls_config:
        ca_file: $W/ca.pem
EOF
log "starting both exporters on CPU 0"
"${EXPORTER_CPU[@]}" "$OURS_BIN" --config "$W/ours.toml" --log-level warn >"$W/ours.log" 2>&1 &
OURS_PID=$!
PIDS+=($OURS_PID)
"${EXPORTER_CPU[@]}" "$BLACKBOX_BIN" --config.file="$W/blackbox.yml" \
  --web.listen-address="127.0.0.1:$BB_PORT" >"$W/blackbox.log" 2>&1 &
BB_PID=$!
PIDS+=($BB_PID)
started ours "http://127.0.0.1:$OURS_PORT/-/healthy"
started blackbox "http://127.0.0.1:$BB_PORT/-/healthy"
sleep 2
OURS_IDLE=$(status_kb $OURS_PID VmRSS)
BB_IDLE=$(status_kb $BB_PID VmRSS)
# The private part (heap, stacks); the rest of RSS is the executable's pages.
OURS_IDLE_ANON=$(status_kb $OURS_PID RssAnon)
BB_IDLE_ANON=$(status_kb $BB_PID RssAnon)

declare -A R
probe_run() { # NAME PID URL EXPECT KEY
  local name=$1 pid=$2 url=$3 expect=$4 key=$5 before after out
  "${SIDE[@]}" "$LOADGEN" probe --url "$url" --count 200 --concurrency "$CONCURRENCY" \
    --expect "$expect" >/dev/null
  before=$(cpu_ms "$pid")
  out=$("${SIDE[@]}" "$LOADGEN" probe --url "$url" --count "$PROBES" \
    --concurrency "$CONCURRENCY" --expect "$expect")
  after=$(cpu_ms "$pid")
  echo "$name $key: $out" >&2
  R[$name.$key.cpu]=$(awk -v a="$before" -v b="$after" -v n="$PROBES" 'BEGIN { printf "%.3f", (b - a) / n }')
  R[$name.$key.rate]=$(printf '%.0f' "$(field "$out" rate)")
}
for scheme in http https; do
  if [[ $scheme == http ]]; then target_port=$HTTP_PORT; else target_port=$HTTPS_PORT; fi
  log "$PROBES $scheme probes through each exporter, concurrency $CONCURRENCY"
  probe_run ours $OURS_PID "http://127.0.0.1:$OURS_PORT/probe?target=$scheme" \
    "glitchtip_up{check=\"ok\",target=\"$scheme\"} 1" $scheme
  probe_run blackbox $BB_PID \
    "http://127.0.0.1:$BB_PORT/probe?module=http_ok&target=$scheme://127.0.0.1:$target_port/ok" \
    "probe_success 1" $scheme
done
OURS_PEAK=$(status_kb $OURS_PID VmHWM)
BB_PEAK=$(status_kb $BB_PID VmHWM)
kill $OURS_PID $BB_PID
wait $OURS_PID $BB_PID 2>/dev/null || true

# --- interval mode: N configured checks -------------------------------------------------
interval_run() { # CHECKS SECONDS
  local checks=$1 seconds=$2 targets=$(($1 / 5)) port pid t0 cpu0 now left rss first_rss="" max_rss=0 min_rss=0 scrape scrapes
  port=$(port)
  {
    printf '[server]\nlisten = "127.0.0.1:%s"\n[defaults]\ninterval = "%ss"\ntimeout = "5s"\n' "$port" "$INTERVAL"
    for ((i = 0; i < targets; i++)); do
      printf '[targets.t%05d]\nurl = "https://127.0.0.1:%s"\nheaders = { X-Bench-Check = "t%05d" }\ntls = { ca_file = "%s/ca.pem" }\n' \
        "$i" "$HTTPS_PORT" "$i" "$W"
    done
  } >"$W/interval-$checks.toml"
  : >"$W/access.log"
  log "interval mode: $checks checks ($targets https targets x 5 default checks), every ${INTERVAL}s, ${seconds}s on CPU 0"
  "${EXPORTER_CPU[@]}" "$OURS_BIN" --config "$W/interval-$checks.toml" --log-level warn \
    >"$W/interval-$checks.log" 2>&1 &
  pid=$!
  PIDS+=($pid)
  started "interval-$checks" "http://127.0.0.1:$port/-/healthy"
  t0=$(date +%s)
  cpu0=$(cpu_ms $pid)
  : >"$W/rss-$checks.txt"
  : >"$W/scrapes-$checks.txt"
  # Every 10 s a scrape of /metrics, as Prometheus would, and RSS; after the first interval
  # (every check has run once) RSS should stay flat.
  while now=$(date +%s); ((now - t0 < seconds)); do
    scrape=$("${SIDE[@]}" "$LOADGEN" scrape --url "http://127.0.0.1:$port/metrics" --count 1)
    echo "$((now - t0)) $(field "$scrape" p50_ms) $(field "$scrape" bytes)" >>"$W/scrapes-$checks.txt"
    rss=$(status_kb $pid VmRSS)
    echo "$((now - t0)) $rss" >>"$W/rss-$checks.txt"
    if ((now - t0 >= INTERVAL + 5)); then
      [[ -z $first_rss ]] && first_rss=$rss min_rss=$rss
      ((rss > max_rss)) && max_rss=$rss
      ((rss < min_rss)) && min_rss=$rss
    fi
    left=$((seconds - (now - t0)))
    sleep $((left < 10 ? left : 10))
  done
  R[interval.$checks.cpu_pct]=$(awk -v a="$cpu0" -v b="$(cpu_ms $pid)" -v s="$(($(date +%s) - t0))" 'BEGIN { printf "%.1f", (b - a) / s / 10 }')
  # The scrapes after the first interval, when every check has its series.
  scrapes=$(awk -v after="$INTERVAL" '$1 >= after { print $2 }' "$W/scrapes-$checks.txt" | sort -g)
  [[ -z $scrapes ]] && scrapes=$(awk '{ print $2 }' "$W/scrapes-$checks.txt" | sort -g)
  R[interval.$checks.metrics_n]=$(wc -l <<<"$scrapes")
  R[interval.$checks.metrics_p50]=$(awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }' <<<"$scrapes")
  R[interval.$checks.metrics_max]=$(tail -1 <<<"$scrapes")
  R[interval.$checks.metrics_mb]=$(awk 'END { printf "%.1f", $3 / 1e6 }' "$W/scrapes-$checks.txt")
  echo "interval $checks /metrics: ${R[interval.$checks.metrics_n]} scrapes, p50 ${R[interval.$checks.metrics_p50]} ms, max ${R[interval.$checks.metrics_max]} ms" >&2
  R[interval.$checks.lag]=$("${SIDE[@]}" "$LOADGEN" histogram --url "http://127.0.0.1:$port/metrics" --name glitchtip_exporter_schedule_lag_seconds)
  echo "interval $checks lag: ${R[interval.$checks.lag]}" >&2
  R[interval.$checks.peak]=$(status_kb $pid VmHWM)
  kill $pid
  wait $pid 2>/dev/null || true
  sleep 1.5 # nginx flushes its access log every second
  R[interval.$checks.jitter]=$("${SIDE[@]}" "$LOADGEN" jitter --log "$W/access.log" --interval "$INTERVAL")
  echo "interval $checks access log: ${R[interval.$checks.jitter]}" >&2
  R[interval.$checks.rss]="${first_rss:-0} ${min_rss:-0} ${max_rss:-0} $(tail -1 "$W/rss-$checks.txt" | cut -d' ' -f2)"
}
interval_run "$SMALL" "$SMALL_RUN"
interval_run "$CHECKS" "$SOAK"

# --- the table --------------------------------------------------------------------------
linkage() { # FILE: size and how it is linked
  local how=static type=non-PIE
  readelf -lW "$1" | grep -q INTERP && how=dynamic
  readelf -hW "$1" | grep -q 'Type: *DYN' && type=PIE
  echo "$(awk -v b="$(stat -c %s "$1")" 'BEGIN { printf "%.1f MB", b / 1e6 }') $how $type"
}
row() { printf '| %-52s | %12s | %12s | %8s | %-22s |\n' "$@"; }
{
  echo
  echo "glitchtip-exporter $("$OURS_BIN" --version | awk '{ print $2 }') vs $("$BLACKBOX_BIN" --version 2>&1 | head -1 | awk '{ print $1, $3 }')"
  echo "machine: $(nproc) cores ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(free -h | awk '/^Mem:/ { print $2 }') memory; exporters pinned to one core"
  echo "binaries: ours $(linkage "$OURS_BIN"); blackbox_exporter $(linkage "$BLACKBOX_BIN")"
  echo "probes: $PROBES per exporter and scheme, concurrency $CONCURRENCY, TLS 1.3 with an ECDSA P-256 certificate, full handshakes"
  echo
  row "figure" "ours" "blackbox" "ratio" "target"
  row "---" "---:" "---:" "---:" "---"
  for scheme in http https; do
    row "CPU per ${scheme^^} probe (ms)" "${R[ours.$scheme.cpu]}" "${R[blackbox.$scheme.cpu]}" \
      "$(ratio "${R[ours.$scheme.cpu]}" "${R[blackbox.$scheme.cpu]}")" "ratio <= 0.5"
  done
  for scheme in http https; do
    row "${scheme^^} probes/s at saturation (one core, c=$CONCURRENCY)" "${R[ours.$scheme.rate]}" "${R[blackbox.$scheme.rate]}" \
      "$(ratio "${R[ours.$scheme.rate]}" "${R[blackbox.$scheme.rate]}")" "higher is better"
  done
  row "idle RSS (MiB)" "$(mib "$OURS_IDLE")" "$(mib "$BB_IDLE")" "$(ratio "$OURS_IDLE" "$BB_IDLE")" "ratio <= 0.5"
  row "idle RSS, private part (MiB, RssAnon)" "$(mib "$OURS_IDLE_ANON")" "$(mib "$BB_IDLE_ANON")" "$(ratio "$OURS_IDLE_ANON" "$BB_IDLE_ANON")" ""
  row "peak RSS under load (MiB, VmHWM)" "$(mib "$OURS_PEAK")" "$(mib "$BB_PEAK")" "$(ratio "$OURS_PEAK" "$BB_PEAK")" "ratio <= 0.5"
  for n in "$SMALL" "$CHECKS"; do
    row "/metrics at $n checks: answer p50 / max of ${R[interval.$n.metrics_n]} (ms)" "${R[interval.$n.metrics_p50]} / ${R[interval.$n.metrics_max]}" "n/a" "n/a" "< 20 ms"
    row "/metrics at $n checks: size (MB)" "${R[interval.$n.metrics_mb]}" "n/a" "n/a" ""
  done
  for n in "$SMALL" "$CHECKS"; do
    lag=${R[interval.$n.lag]}
    jit=${R[interval.$n.jitter]}
    read -r first min max last <<<"${R[interval.$n.rss]}"
    row "interval $n checks: start lag p50 / p99 (ms)" "$(field "$lag" p50_ms) / $(field "$lag" p99_ms)" "n/a" "n/a" "p99 <= 1000 ms"
    row "interval $n checks: starts over 1 s late" "$(field "$lag" over_1s) of $(field "$lag" count)" "n/a" "n/a" ""
    row "interval $n checks: gap - ${INTERVAL}s p50 / p99 (ms, access log)" "$(field "$jit" p50_ms) / $(field "$jit" p99_ms)" "n/a" "n/a" "$(field "$jit" gaps) gaps"
    row "interval $n checks: CPU (% of one core)" "${R[interval.$n.cpu_pct]}" "n/a" "n/a" ""
    row "interval $n checks: RSS after 1st round min/max/end (MiB)" "$(mib "$min") / $(mib "$max") / $(mib "$last")" "n/a" "n/a" "flat"
  done
  echo
  echo "blackbox_exporter has no interval mode and keeps no per-target results in /metrics: n/a."
  echo "CPU: utime+stime of each exporter's own process from /proc/PID/stat; RSS: VmRSS, VmHWM, RssAnon."
  echo "/metrics answer: time to the last byte over a fresh connection, one scrape every 10 s while the checks run (after the first interval), as Prometheus sees it."
  echo "Start lag: glitchtip_exporter_schedule_lag_seconds (the exporter's own histogram, interpolated within buckets); gap: the time between two requests of one check in nginx's access log, minus the interval."
} | tee "$W/table.md"
