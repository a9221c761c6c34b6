#!/usr/bin/env bash
# End-to-end scenarios on GlitchTip 6's real task library (issue #22): django-vtasks 3.1.0
# and 3.2.0 from the package registry under scripts/vtasks-lab (real redis-server and
# PostgreSQL on 127.0.0.1), the exporter reading them, and a real Prometheus evaluating
# alerts/glitchtip.rules.yml every 2 s. Every scenario runs at the same time on its own lab
# instance (own broker, own worker), against one exporter and one Prometheus.
#
#   scripts/test-vtasks.sh            run as root (postgres runs as OS user postgres)
#
# Prints "PASS name (...)" or "FAIL name (...)" per scenario, "SKIP name (...)" for a
# scenario the exporter cannot serve yet, and last "vtasks: N passed, N failed".
# Exit status non-zero when a scenario failed.
#
# Environment:
#   VT_LAB_DIR       lab dir holding the cached virtualenvs (default /tmp/vtlab); this
#                    script's instances (t-*) are created there and destroyed at the end
#   VT_EXPORTER_BIN  exporter binary (default: scripts/build.sh, quick when up to date)
#   VT_RULES         the rules file (default alerts/glitchtip.rules.yml)
#   VT_KEEP=1        leave the instances, exporter and Prometheus running at the end
#   VT_HEALTHY_SECONDS=N  keep every instance healthy for N more seconds after the baseline
#                    and fail if any alert was pending or firing meanwhile (by hand: 3600)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
LAB="$ROOT/scripts/vtasks-lab/lab.sh"
export VT_LAB_DIR="${VT_LAB_DIR:-/tmp/vtlab}"
RULES="${VT_RULES:-$ROOT/alerts/glitchtip.rules.yml}"
STALL_ALERT=GlitchTipQueueSchedulerStalled
OUTAGE=40 # seconds of Valkey outage: the FACTS.md outage (5 s did not kill 3.1.0)
PG_OUTAGE=15      # the FACTS.md outage; then, if the scheduler survived twice:
PG_LONG_OUTAGE=40 # longer than psycopg's pool timeout (30 s, GlitchTip's default)

# ---------------------------------------------------------------------------------------
# Switches for the queue reader's new series (src/queue: a missing scheduler key while
# workers live, and the database backend read through PostgreSQL). Each scenario that
# needs one runs only when the exporter exports its series (checked by scraping /metrics)
# or accepts its config (--check-config), else it prints SKIP. Set these to the names the
# queue reader ships; nothing else in this file needs to change.
#
# A gauge the exporter writes per vtasks target, 1 while the scheduler lives and 0 when
# its heartbeat task's key is too old or missing while workers live (the queue reader's
# glitchtip_queue_scheduler_up, in progress). It must reach 0 within MISSING_WITHIN seconds
# after Valkey comes back empty; then the alert on it (VT_MISSING_ALERT, default: the first
# alert in the rules file that names the series) fires, and resolves on a worker restart.
VT_MISSING_SERIES="${VT_MISSING_SERIES:-glitchtip_queue_scheduler_up}"
VT_MISSING_ALERT="${VT_MISSING_ALERT:-GlitchTipQueueSchedulerStalled}"
MISSING_WITHIN="${VT_MISSING_WITHIN:-150}"
# The [targets.NAME.queue] table that points the exporter at the database backend.
# Arguments: target name, PostgreSQL port, password file of the read-only role vt_reader.
# The scheduler's death shows as glitchtip_scheduler_last_run_age_seconds growing, so the
# bundled GlitchTipQueueSchedulerStalled alert is expected.
db_queue_toml() {
  cat <<TOML
[targets.$1.queue]
url = "postgres://vt_reader@127.0.0.1:$2/glitchtip"
password = { file = "$3" }
workers = true
interval = "2s"
timeout = "2s"
TOML
}
# ---------------------------------------------------------------------------------------

W=$(mktemp -d /tmp/vtasks-test.XXXXXX)
chmod 755 "$W"
EXPORTER_PID=""
PROM_PID=""
INSTANCES=()
T_START=$(date +%s)
say() { printf 'vtasks: [%4ss] %s\n' "$(($(date +%s) - T_START))" "$*"; }
lab() { "$LAB" "$@" 2>>"$W/lab.log"; }

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  if [[ ${VT_KEEP:-0} == 1 ]]; then
    say "VT_KEEP=1: left running (exporter pid $EXPORTER_PID, prometheus pid $PROM_PID, dir $W)"
    return
  fi
  local i
  for i in "${INSTANCES[@]}"; do lab -n "$i" destroy; done
  for p in "$EXPORTER_PID" "$PROM_PID"; do
    [[ -n $p ]] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
  done
  rm -rf "$W"
}
trap cleanup EXIT

PASSED=0
FAILED=0
SKIPPED=0
# result LINE: prints a scenario's "PASS|FAIL|SKIP name (detail)" line and counts it.
result() {
  echo "$1"
  case ${1%% *} in PASS) PASSED=$((PASSED + 1)) ;; SKIP) SKIPPED=$((SKIPPED + 1)) ;; *) FAILED=$((FAILED + 1)) ;; esac
}
finish() {
  local skipped=""
  [[ $SKIPPED -eq 0 ]] || skipped=", $SKIPPED skipped"
  echo "vtasks: $PASSED passed, $FAILED failed$skipped"
  [[ $FAILED -eq 0 ]]
  exit
}
setup_failed() { # DETAIL
  result "FAIL setup ($1)"
  for f in "$W"/lab.log "$W"/exporter.log "$W"/prometheus.log; do
    [[ -s $f ]] && { echo "--- tail $f"; tail -15 "$f"; }
  done
  finish
}

free_port() {
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 20000))
    ss -ltnH "sport = :$p" | grep -q . || { echo "$p"; return 0; }
  done
  return 1
}

# ---- Prometheus queries -----------------------------------------------------------------
# prom_query EXPR PYTHON FALLBACK: runs instant query EXPR and prints PYTHON evaluated over
# its result list `r`, or FALLBACK when Prometheus did not answer.
prom_query() {
  curl -fsS -m 5 --get "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$1" 2>/dev/null |
    python3 -c "import json, sys; r = json.load(sys.stdin)['data']['result']; print($2)" 2>/dev/null || echo "$3"
}
# prom_count EXPR: number of series EXPR returns now (-1 when Prometheus did not answer).
prom_count() { prom_query "$1" 'len(r)' -1; }
# prom_names EXPR: the alertname labels EXPR returns, space-separated ("" when none).
prom_names() {
  prom_query "$1" '" ".join(sorted({x["metric"].get("alertname", "?") for x in r}))' "(prometheus did not answer)"
}
firing() { echo "ALERTS{alertname=\"$1\",target=\"$2\",alertstate=\"firing\"}"; }
# wait_until SECONDS EXPR [absent]: polls every second until EXPR returns a series (with
# "absent": returns none); prints the seconds it took; fails after SECONDS.
wait_until() {
  local start=$SECONDS n
  while ((SECONDS - start <= $1)); do
    n=$(prom_count "$2")
    if [[ ${3:-} == absent ]]; then ((n == 0)); else ((n > 0)); fi && { echo $((SECONDS - start)); return 0; }
    sleep 1
  done
  return 1
}

# ---- scenarios (each runs in the background and writes its result lines) ---------------
age_ok() { echo "glitchtip_scheduler_last_run_age_seconds{target=\"$1\",task=\"uptime-dispatch-checks\"} < 10"; }
# Firing queue alerts of a target. (GlitchTipQueueUnreadable is pending during any broker
# outage and fires only after 2 minutes of it.)
queue_alerts() { echo "ALERTS{alertname=~\"GlitchTipQueue.*\",alertstate=\"firing\",target=\"$1\"}"; }

# blip_until_dead INSTANCE OUTAGE...: stops the broker for each OUTAGE (seconds) in turn
# until the lab shows the scheduler dead (uptime-dispatch-checks missing, or older than 5 s
# 8 s after the broker came back). Valkey's 3.1.0 scheduler dies on the first outage. The
# database backend's dies on a 15 s outage only when the error hits an unguarded call (one
# outage in five here), and every time the outage outlasts psycopg's 30 s pool timeout.
# Sets T_BACK (epoch of the last return), TRIES and AGE; fails when it survived them all.
blip_until_dead() {
  local inst=$1 outage
  shift
  TRIES=0
  for outage in "$@"; do
    TRIES=$((TRIES + 1))
    lab -n "$inst" blip broker "$outage"
    T_BACK=$(date +%s)
    sleep 8
    AGE=$(lab -n "$inst" age uptime-dispatch-checks)
    [[ $AGE == missing ]] && return 0
    awk -v a="$AGE" 'BEGIN { exit !(a > 5) }' && return 0
  done
  return 1
}

# lab_workers_within INSTANCE SECONDS: waits until the lab shows a live worker; prints
# the count (0 when none came within SECONDS).
lab_workers_within() {
  local start=$SECONDS n=0
  while ((SECONDS - start <= $2)); do
    n=$(lab -n "$1" alive)
    [[ $n -ge 1 ]] && break
    sleep 2
  done
  echo "$n"
}

# fires_then_resolves NAME INSTANCE ALERT WITHIN [HEALTHY]: after blip_until_dead, ALERT
# fires for the instance within WITHIN s of the broker's return while a worker lives; once
# the worker (and with it the scheduler) is restarted, HEALTHY (default: a fresh
# uptime-dispatch-checks) holds and ALERT no longer fires.
fires_then_resolves() {
  local name=$1 inst=$2 alert=$3 within=$4 healthy=${5:-$(age_ok "$2")} t_fire t_restart t_clear workers
  if ! wait_until "$within" "$(firing "$alert" "$inst")" >/dev/null; then
    echo "FAIL $name ($alert did not fire within $within s after the broker came back; lab: last run $(lab -n "$inst" age uptime-dispatch-checks), $(lab -n "$inst" alive) live worker(s))"
    return
  fi
  t_fire=$(($(date +%s) - T_BACK))
  workers=$(lab -n "$inst" alive)
  if [[ $workers -lt 1 ]]; then
    echo "FAIL $name ($alert fired, but the lab shows no live worker: not the silent death)"
    return
  fi
  t_restart=$(date +%s)
  lab -n "$inst" restart worker
  if ! wait_until 60 "$healthy unless on (target) $(firing "$alert" "$inst")" >/dev/null; then
    echo "FAIL $name ($alert still firing, or the scheduler not back, 60 s after the worker restart)"
    return
  fi
  t_clear=$(($(date +%s) - t_restart))
  echo "PASS $name (outages: $TRIES; $workers live worker(s) while $alert fired ${t_fire} s after the broker came back; resolved ${t_clear} s after the worker restart began)"
}

# 3.1.0, Valkey with persistence: the keys come back from disk and age; the bundled
# GlitchTipQueueSchedulerStalled fires although a worker lives, and resolves on restart.
scenario_persist_stall() {
  local name=valkey-persist-3.1.0-stall-fires-and-resolves
  blip_until_dead t-v31p "$OUTAGE" || { echo "FAIL $name (the scheduler survived a $OUTAGE s outage: last run $AGE s ago)"; return; }
  fires_then_resolves "$name" t-v31p "$STALL_ALERT" 60
}

# Negative control: 3.2.0's scheduler resumes after the same outage and no queue alert
# fires at any evaluation from the outage's start to 60 s after the keys are fresh.
scenario_persist_survives() {
  local name=valkey-persist-3.2.0-no-alert inst=t-v32p t_start t_back t_fresh fired
  t_start=$(date +%s)
  lab -n "$inst" blip broker "$OUTAGE"
  t_back=$(date +%s)
  if ! wait_until 45 "$(age_ok "$inst")" >/dev/null; then
    echo "FAIL $name (uptime-dispatch-checks not under 10 s within 45 s of the broker's return: lab says $(lab -n "$inst" age uptime-dispatch-checks))"
    return
  fi
  t_fresh=$(($(date +%s) - t_back))
  sleep 60
  fired=$(prom_names "max_over_time($(queue_alerts "$inst")[$(($(date +%s) - t_start))s])")
  if [[ -n $fired ]]; then
    echo "FAIL $name ($fired fired for $inst during or after the outage)"
    return
  fi
  echo "PASS $name (keys fresh ${t_fresh} s after the broker came back; no queue alert from the outage's start to 60 s later)"
}

# 3.1.0, Valkey without persistence: the restart empties Valkey and the dead scheduler never
# writes its keys again. The gap as Prometheus sees it: queue readable, a live worker, no
# scheduler series (always checked); the alert on it needs VT_MISSING_SERIES (gated).
scenario_nopersist() {
  local name=valkey-nopersist-3.1.0-keys-gone-worker-alive inst=t-v31n
  local gated=valkey-nopersist-3.1.0-missing-keys-fire-and-resolve gap alert
  gap="glitchtip_queue_up{target=\"$inst\"} == 1 and on (target) glitchtip_workers{target=\"$inst\"} >= 1 unless on (target) glitchtip_scheduler_last_run_age_seconds{target=\"$inst\"}"
  blip_until_dead "$inst" "$OUTAGE" || { echo "FAIL $name (the scheduler survived a $OUTAGE s outage: last run $AGE s ago)"; return; }
  if [[ $AGE != missing ]]; then
    echo "FAIL $name (Valkey without persistence still holds a last run after the restart: $AGE s)"
    return
  fi
  if ! wait_until 30 "$gap" >/dev/null; then
    echo "FAIL $name (Prometheus did not see a readable queue with a live worker and no scheduler series)"
    return
  fi
  echo "PASS $name (after the restart: no vtasks_last_run key, $(lab -n "$inst" alive) live worker(s), queue readable; Prometheus sees no scheduler series)"
  if [[ $MISSING_ON == 1 ]]; then
    if ! wait_until "$MISSING_WITHIN" "$VT_MISSING_SERIES{target=\"$inst\"} == 0" >/dev/null; then
      echo "FAIL $gated ($VT_MISSING_SERIES did not reach 0 within $MISSING_WITHIN s after Valkey came back empty)"
      return
    fi
    alert=${VT_MISSING_ALERT:-$(awk -v s="$VT_MISSING_SERIES" '/^ *- alert: / { name = $3 } name != "" && index($0, s) { print name; exit }' "$RULES")}
    if [[ -z $alert ]]; then
      echo "FAIL $gated ($VT_MISSING_SERIES reached 0, but no alert in alerts/glitchtip.rules.yml uses it)"
      return
    fi
    fires_then_resolves "$gated" "$inst" "$alert" "$MISSING_WITHIN" "$VT_MISSING_SERIES{target=\"$inst\"} == 1"
  else
    echo "SKIP $gated (the exporter exports no $VT_MISSING_SERIES; set VT_MISSING_SERIES)"
  fi
}

# 3.1.0, database backend: PostgreSQL stopped for 15 s. The lab's own reading (always):
# the scheduler's row stops while worker_alive stays fresh; the alert needs the exporter
# to read PostgreSQL (gated on db_queue_toml being accepted).
scenario_db() {
  local name=db-3.1.0-scheduler-dies-worker-alive inst=t-d31 gated=db-3.1.0-stall-fires-and-resolves workers
  blip_until_dead "$inst" "$PG_OUTAGE" "$PG_OUTAGE" "$PG_LONG_OUTAGE" ||
    { echo "FAIL $name (the scheduler survived outages of $PG_OUTAGE, $PG_OUTAGE and $PG_LONG_OUTAGE s: last run $AGE s ago)"; return; }
  # psycopg's pool reconnects with back-off: the worker's liveness row returns within ~20 s.
  workers=$(lab_workers_within "$inst" 45)
  AGE=$(lab -n "$inst" age uptime-dispatch-checks)
  if [[ $workers -ge 1 ]] && awk -v a="$AGE" 'BEGIN { exit !(a > 20) }'; then
    echo "PASS $name (outages: $TRIES; $(($(date +%s) - T_BACK)) s after PostgreSQL came back: last run $AGE s ago, $workers live worker(s))"
  else
    echo "FAIL $name ($(($(date +%s) - T_BACK)) s after PostgreSQL came back: last run $AGE s ago, $workers live worker(s))"
  fi
  if [[ $DB_READY == 1 ]]; then
    fires_then_resolves "$gated" "$inst" "$STALL_ALERT" 90
  else
    echo "SKIP $gated (the exporter does not read the database backend yet: $(head -1 "$W/check-db.log"))"
  fi
}

# ---- setup --------------------------------------------------------------------------------
command -v redis-server >/dev/null || setup_failed "redis-server missing (apt-get install redis-server)"
command -v prometheus >/dev/null || setup_failed "prometheus missing (apt-get install prometheus)"
[[ $EUID -eq 0 ]] || setup_failed "run as root (PostgreSQL runs as OS user postgres)"

t0=$SECONDS
lab build || setup_failed "lab build (virtualenvs) failed: $(tail -3 "$W/lab.log")"
say "virtualenvs ready in $((SECONDS - t0)) s"

if [[ -n ${VT_EXPORTER_BIN:-} ]]; then
  BIN=$VT_EXPORTER_BIN
else
  t0=$SECONDS
  BIN=$(scripts/build.sh 2>"$W/build.log") || setup_failed "scripts/build.sh failed: $(tail -3 "$W/build.log")"
  say "exporter binary ready in $((SECONDS - t0)) s"
fi
[[ -x $BIN ]] || setup_failed "no exporter binary at $BIN"

# Instances: t-v31p (3.1.0, Valkey with persistence), t-v32p (3.2.0, same),
# t-v31n (3.1.0, Valkey without persistence), t-d31 (3.1.0, database backend).
t0=$SECONDS
# bring_up NAME create-options...: a fresh instance, started (in the background: the
# instances come up side by side); a failure leaves NAME in setup-failed.
bring_up() {
  local n=$1
  shift
  INSTANCES+=("$n")
  { lab -n "$n" destroy && lab -n "$n" create "$@" && lab -n "$n" start all; } || echo "$n" >>"$W/setup-failed" &
  UP_JOBS+=($!)
}
UP_JOBS=()
bring_up t-v31p --version 3.1.0 --backend valkey --persist yes
bring_up t-v32p --version 3.2.0 --backend valkey --persist yes
bring_up t-v31n --version 3.1.0 --backend valkey --persist no
HAVE_PG=0
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  HAVE_PG=1
  bring_up t-d31 --version 3.1.0 --backend db
fi
wait "${UP_JOBS[@]}"
[[ ! -s $W/setup-failed ]] || setup_failed "lab instance(s) $(tr '\n' ' ' <"$W/setup-failed")did not come up"
say "lab instances ${INSTANCES[*]} started in $((SECONDS - t0)) s"

env_of() { lab -n "$1" env | sed -n "s/^$2=//p"; }

EXPORTER_PORT=$(free_port) || setup_failed "no free port"
{
  cat <<TOML
[server]
listen = "127.0.0.1:$EXPORTER_PORT"
state_file = "$W/state.json"
TOML
  for i in t-v31p t-v32p t-v31n; do
    cat <<TOML
[targets.$i]
url = "http://127.0.0.1:9"
default_checks = false
[targets.$i.queue]
url = "$(env_of "$i" VT_VALKEY_URL)"
layout = "vtasks"
workers = true
interval = "1s"
timeout = "1s"
TOML
  done
} >"$W/exporter.toml"
DB_READY=0
if [[ $HAVE_PG == 1 ]]; then
  cp "$W/exporter.toml" "$W/exporter-db.toml"
  {
    echo "[targets.t-d31]"
    echo 'url = "http://127.0.0.1:9"'
    echo "default_checks = false"
    db_queue_toml t-d31 "$(env_of t-d31 VT_PG_PORT)" "$(env_of t-d31 VT_PG_READER_PASSWORD_FILE)"
  } >>"$W/exporter-db.toml"
  if "$BIN" --config "$W/exporter-db.toml" --check-config >"$W/check-db.log" 2>&1; then
    DB_READY=1
    mv "$W/exporter-db.toml" "$W/exporter.toml"
  fi
fi
"$BIN" --config "$W/exporter.toml" --check-config >"$W/check.log" 2>&1 ||
  setup_failed "exporter config rejected: $(cat "$W/check.log")"
"$BIN" --config "$W/exporter.toml" --log-level warn >"$W/exporter.log" 2>&1 &
EXPORTER_PID=$!
for _ in $(seq 100); do
  curl -fsS -m 1 "http://127.0.0.1:$EXPORTER_PORT/-/healthy" >/dev/null 2>&1 && break
  kill -0 "$EXPORTER_PID" 2>/dev/null || setup_failed "the exporter exited at start"
  sleep 0.1
done

cat >"$W/prometheus.yml" <<YML
global:
  scrape_interval: 2s
  evaluation_interval: 2s
rule_files:
  - $RULES
scrape_configs:
  - job_name: glitchtip-exporter
    scrape_timeout: 2s
    static_configs:
      - targets: ["127.0.0.1:$EXPORTER_PORT"]
YML
for _ in 1 2 3; do
  PROM_PORT=$(free_port) || setup_failed "no free port"
  prometheus --config.file="$W/prometheus.yml" --storage.tsdb.path="$W/prom-data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$W/prometheus.log" 2>&1 &
  PROM_PID=$!
  for _ in $(seq 100); do
    curl -fsS -m 1 "http://127.0.0.1:$PROM_PORT/-/ready" >/dev/null 2>&1 && break 2
    kill -0 "$PROM_PID" 2>/dev/null || break
    sleep 0.2
  done
  kill "$PROM_PID" 2>/dev/null && wait "$PROM_PID" 2>/dev/null
  PROM_PID=""
done
[[ -n $PROM_PID ]] || setup_failed "prometheus did not start"

# Healthy first, as Prometheus sees it: fresh scheduler and a live worker everywhere.
t0=$SECONDS
for i in t-v31p t-v32p t-v31n; do
  wait_until 60 "$(age_ok "$i")" >/dev/null || setup_failed "$i: no fresh uptime-dispatch-checks in Prometheus within 60 s"
  wait_until 30 "glitchtip_workers{target=\"$i\"} >= 1" >/dev/null || setup_failed "$i: no live worker in Prometheus"
done
[[ $(prom_count 'ALERTS{alertname=~"GlitchTipQueue.*"}') -eq 0 ]] ||
  setup_failed "a queue alert is pending or firing before any outage"
say "healthy baseline in Prometheus after $((SECONDS - t0)) s"
HEALTHY_SECONDS=${VT_HEALTHY_SECONDS:-0}
if ((HEALTHY_SECONDS > 0)); then
  say "healthy window: ${HEALTHY_SECONDS} s with every instance healthy"
  sleep "$HEALTHY_SECONDS"
  window_alerts=$(prom_count "max_over_time(count(ALERTS)[${HEALTHY_SECONDS}s:5s])")
  if [[ ${window_alerts:-0} -eq 0 ]]; then
    result "PASS healthy-window-${HEALTHY_SECONDS}s (no alert pending or firing in ${HEALTHY_SECONDS} s, $(prom_count 'glitchtip_queue_up == 1') queue readers up)"
  else
    result "FAIL healthy-window-${HEALTHY_SECONDS}s (an alert was pending or firing: $(curl -fsS "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=max_over_time(ALERTS[${HEALTHY_SECONDS}s])" | head -c 600))"
  fi
fi

METRICS=$(curl -fsS -m 5 "http://127.0.0.1:$EXPORTER_PORT/metrics")
has_series() { grep -qE "^(# HELP )?$1[ {]" <<<"$METRICS"; }

# ---- run every scenario at once --------------------------------------------------------
MISSING_ON=0
has_series "$VT_MISSING_SERIES" && MISSING_ON=1
say "gated scenarios: missing scheduler keys $([[ $MISSING_ON == 1 ]] && echo on || echo "off (no $VT_MISSING_SERIES)"), database backend $([[ $DB_READY == 1 ]] && echo on || echo off)"
t0=$SECONDS
say "broker outages start (Valkey ${OUTAGE} s, PostgreSQL ${PG_OUTAGE} s)"
SCENARIOS=()
scenario_persist_stall >"$W/r1" &
SCENARIOS+=($!)
scenario_persist_survives >"$W/r2" &
SCENARIOS+=($!)
scenario_nopersist >"$W/r3" &
SCENARIOS+=($!)
if [[ $HAVE_PG == 1 ]]; then
  scenario_db >"$W/r4" &
  SCENARIOS+=($!)
else
  echo "FAIL db-3.1.0-scheduler-dies-worker-alive (no PostgreSQL binaries under /usr/lib/postgresql)" >"$W/r4"
fi
wait "${SCENARIOS[@]}"
say "scenarios took $((SECONDS - t0)) s"

for r in "$W"/r1 "$W"/r2 "$W"/r3 "$W"/r4; do
  [[ -s $r ]] || echo "FAIL scenario-$(basename "$r") (no result line)" >"$r"
  while IFS= read -r line; do result "$line"; done <"$r"
done
if [[ $FAILED -gt 0 ]]; then
  echo "--- exporter log (tail)"; tail -20 "$W/exporter.log"
  echo "--- lab log (tail)"; tail -20 "$W/lab.log"
fi
finish
