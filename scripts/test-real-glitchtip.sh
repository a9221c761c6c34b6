#!/usr/bin/env bash
# A real GlitchTip in the suite (issue #15): the loopback lab of ../shared/glitchtip/lab
# (GlitchTip 5.x backend, Celery worker and beat, its own PostgreSQL and Redis), the
# exporter watching it with the default checks, the ingest canary and the queue reader, and
# a real Prometheus evaluating alerts/glitchtip.rules.yml at 15 s scrape and evaluation.
# Then the fault matrix (scripts/real-glitchtip/matrix.py): a 5-minute healthy baseline and
# one fault at a time, each followed by recovery.
#
#   scripts/test-real-glitchtip.sh        run as root (apt, PostgreSQL runs as user postgres)
#
# Prints one "PASS|FAIL row: ..." line per fault and last "realgt: N passed, N failed"; exit
# status non-zero when a row failed. When the lab cannot be built (no ../shared, no network to
# the package registries) it says so in one line, prints a SKIP line and "realgt: 0 passed,
# 0 failed", and exits 0.
#
# Environment:
#   REALGT_SHARED        the shared folder (default: ../shared beside the clone)
#   GT_LAB_DIR           where the lab is built and kept for the next run (default
#                        /tmp/gtlab-ci; never inside ../shared, which may be read-only)
#   REALGT_EXPORTER_BIN  exporter binary (default: scripts/build.sh)
#   REALGT_BASELINE      seconds of healthy baseline (default 300)
#   REALGT_KEEP=1        leave the lab, exporter and Prometheus running at the end
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
# ../shared beside the clone; from a git worktree, beside the main checkout.
SHARED="${REALGT_SHARED:-$(git rev-parse --show-toplevel 2>/dev/null || echo "$ROOT")/../shared}"
if [[ -z ${REALGT_SHARED:-} && ! -d $SHARED ]] && common=$(git rev-parse --path-format=absolute --git-common-dir 2>/dev/null); then
  SHARED="$(dirname "$common")/../shared"
fi
LAB_SRC="$SHARED/glitchtip/lab"
export GT_LAB_DIR="${GT_LAB_DIR:-/tmp/gtlab-ci}"
LAB_DIR=$GT_LAB_DIR
RULES="$ROOT/alerts/glitchtip.rules.yml"
T_START=$(date +%s)
W=$(mktemp -d /tmp/realgt-test.XXXXXX)
EXPORTER_PID=""
PROM_PID=""
LAB_STARTED=0
say() { printf 'realgt: [%4ss] %s\n' "$(($(date +%s) - T_START))" "$*" >&2; }

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  if [[ ${REALGT_KEEP:-0} == 1 ]]; then
    say "REALGT_KEEP=1: left running (exporter pid $EXPORTER_PID, prometheus pid $PROM_PID, lab $LAB_DIR, dir $W)"
    return
  fi
  local p
  for p in "$EXPORTER_PID" "$PROM_PID"; do
    [[ -n $p ]] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
  done
  # the lab's stop.sh signals only the PIDs recorded in LAB_DIR/run (and pg_ctl -D LAB_DIR/pgdata)
  [[ $LAB_STARTED == 1 ]] && "$LAB_SRC/stop.sh" "$LAB_DIR" >>"$W/lab.log" 2>&1
  LAB_STARTED=0 EXPORTER_PID="" PROM_PID=""
  rm -rf "$W"
}
trap cleanup EXIT

skip() { # REASON: the lab cannot be built here
  echo "realgt: cannot build the GlitchTip lab: $1"
  echo "SKIP realgt ($1)"
  echo "realgt: 0 passed, 0 failed"
  exit 0
}
setup_failed() { # DETAIL
  echo "FAIL setup ($1)"
  local f
  for f in "$W"/setup.log "$W"/lab.log "$W"/exporter.log "$W"/prometheus.log; do
    [[ -s $f ]] && { echo "--- tail $f"; tail -15 "$f"; }
  done
  echo "realgt: 0 passed, 1 failed"
  exit 1
}
free_port() {
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 20000))
    ss -ltnH "sport = :$p" | grep -q . || { echo "$p"; return 0; }
  done
  return 1
}

# ---- the lab: build once, reuse ------------------------------------------------------------
[[ -x $LAB_SRC/setup.sh ]] || skip "no $LAB_SRC/setup.sh (../shared missing)"
case "$(cd "$LAB_DIR" 2>/dev/null && pwd -P)/" in
  "$(cd "$SHARED" && pwd -P)"/*) setup_failed "GT_LAB_DIR $LAB_DIR lies inside $SHARED" ;;
esac
[[ $EUID -eq 0 ]] || skip "not root (setup.sh installs Debian packages and runs PostgreSQL as user postgres)"
command -v prometheus >/dev/null || setup_failed "prometheus missing (apt-get install prometheus)"
command -v python3 >/dev/null || setup_failed "python3 missing"
mkdir -p "$LAB_DIR" && chmod 755 "$LAB_DIR"

t0=$SECONDS
if [[ -f $LAB_DIR/lab.env ]] && compgen -G "$LAB_DIR/venv/.gtlab-deps-*" >/dev/null; then
  say "reusing the lab built in $LAB_DIR"
  LAB_STARTED=1
  "$LAB_SRC/start.sh" "$LAB_DIR" >"$W/setup.log" 2>&1 || setup_failed "start.sh failed"
else
  # The registries setup.sh needs: Debian's (only for missing packages) and PyPI.
  index="${UV_INDEX_URL:-${PIP_INDEX_URL:-https://pypi.org/simple}}"
  curl -fsS -m 20 -o /dev/null "${index%/}/uv/" 2>/dev/null || skip "no answer from the Python package index $index"
  # First build: ports chosen free now, kept in LAB_DIR/config.env for every later run.
  if [[ ! -f $LAB_DIR/config.env ]]; then
    export GT_WEB_PORT GT_PG_PORT GT_REDIS_PORT
    if ! { GT_WEB_PORT=$(free_port) && GT_PG_PORT=$(free_port) && GT_REDIS_PORT=$(free_port); }; then
      setup_failed "no free port"
    fi
  fi
  say "building the lab in $LAB_DIR (3-5 minutes)"
  LAB_STARTED=1
  "$LAB_SRC/setup.sh" "" "$LAB_DIR" >"$W/setup.log" 2>&1 || {
    grep -qiE "temporary failure|could not resolve|connection (refused|reset)|failed to fetch|network is unreachable" "$W/setup.log" &&
      skip "setup.sh could not reach a package registry: $(grep -iE -m1 "temporary failure|could not resolve|connection|failed to fetch|unreachable" "$W/setup.log")"
    setup_failed "setup.sh failed"
  }
fi
say "lab ready in $((SECONDS - t0)) s"
# shellcheck disable=SC1091
source "$LAB_DIR/lab.env"

# ---- the exporter ----------------------------------------------------------------------------
if [[ -n ${REALGT_EXPORTER_BIN:-} ]]; then
  BIN=$REALGT_EXPORTER_BIN
else
  t0=$SECONDS
  BIN=$(scripts/build.sh 2>"$W/build.log") || setup_failed "scripts/build.sh failed: $(tail -3 "$W/build.log")"
  say "exporter binary ready in $((SECONDS - t0)) s"
fi
[[ -x $BIN ]] || setup_failed "no exporter binary at $BIN"

(umask 077 && printf '%s\n' "$GT_DSN" >"$W/dsn" && printf '%s\n' "$GT_TOKEN" >"$W/token")
EXPORTER_PORT=$(free_port) || setup_failed "no free port"
# Default checks (the lab ships no front end, so GET / answers 500: the dashboard check is
# off, as the README says for a backend-only install), the canary with the lab's DSN and
# token, and the queue reader on the lab's Redis.
cat >"$W/exporter.toml" <<TOML
[server]
listen = "127.0.0.1:$EXPORTER_PORT"
state_file = "$W/state.json"

[targets.lab]
url = "$GT_URL"

[targets.lab.checks.dashboard]
enabled = false

[targets.lab.canary]
dsn = { file = "$W/dsn" }
token = { file = "$W/token" }
organization = "$GT_ORG"

[targets.lab.queue]
url = "$GT_REDIS_URL"
layout = "celery"
TOML
"$BIN" --config "$W/exporter.toml" --check-config >"$W/check.log" 2>&1 ||
  setup_failed "exporter config rejected: $(cat "$W/check.log")"
"$BIN" --config "$W/exporter.toml" --log-level warn >"$W/exporter.log" 2>&1 &
EXPORTER_PID=$!
for _ in $(seq 100); do
  curl -fsS -m 1 "http://127.0.0.1:$EXPORTER_PORT/-/healthy" >/dev/null 2>&1 && break
  kill -0 "$EXPORTER_PID" 2>/dev/null || setup_failed "the exporter exited at start"
  sleep 0.2
done

# ---- Prometheus --------------------------------------------------------------------------------
cat >"$W/prometheus.yml" <<YML
global:
  scrape_interval: 15s
  evaluation_interval: 15s
rule_files:
  - $RULES
scrape_configs:
  - job_name: glitchtip-exporter
    scrape_timeout: 10s
    static_configs:
      - targets: ["127.0.0.1:$EXPORTER_PORT"]
YML
for _ in 1 2 3; do
  PROM_PORT=$(free_port) || setup_failed "no free port"
  prometheus --config.file="$W/prometheus.yml" --storage.tsdb.path="$W/prom-data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$W/prometheus.log" 2>&1 &
  PROM_PID=$!
  for _ in $(seq 150); do
    curl -fsS -m 1 "http://127.0.0.1:$PROM_PORT/-/ready" >/dev/null 2>&1 && break 2
    kill -0 "$PROM_PID" 2>/dev/null || break
    sleep 0.2
  done
  kill "$PROM_PID" 2>/dev/null && wait "$PROM_PID" 2>/dev/null
  PROM_PID=""
done
[[ -n $PROM_PID ]] || setup_failed "prometheus did not start"
say "exporter on 127.0.0.1:$EXPORTER_PORT, prometheus on 127.0.0.1:$PROM_PORT"

# ---- the fault matrix ----------------------------------------------------------------------------
EXPORTER="127.0.0.1:$EXPORTER_PORT" PROM="127.0.0.1:$PROM_PORT" LAB_SCENARIO="$LAB_SRC/scenario.sh" \
  LAB_DIR="$LAB_DIR" TARGET=lab WORK="$W" BASELINE="${REALGT_BASELINE:-300}" REALGT_T0="$T_START" \
  python3 scripts/real-glitchtip/matrix.py
read -r passed failed <"$W/tally" 2>/dev/null || { passed=0 failed=1; echo "FAIL driver (no tally written)"; }
if [[ $failed -ne 0 ]]; then
  echo "--- exporter log (tail)"; tail -20 "$W/exporter.log"
  echo "--- lab log (tail)"; tail -20 "$W/lab.log"
fi
cleanup
say "total $(($(date +%s) - T_START)) s (lab build or start included)"
echo "realgt: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
