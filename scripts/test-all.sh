#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine (as root): installs what the tests
# need when it is missing, then format check, lints and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# Tools the tests use; each line: command package.
while read -r cmd pkg; do
  [ -n "$cmd" ] || continue
  command -v "$cmd" >/dev/null 2>&1 || need_apt+=("$pkg")
done <<'LIST'
prometheus prometheus
promtool prometheus
prometheus-alertmanager prometheus-alertmanager
amtool prometheus-alertmanager
redis-server redis-server
node nodejs
npm npm
curl curl
readelf binutils
systemd-analyze systemd
ss iproute2
LIST
python3 -c 'import yaml' 2>/dev/null || need_apt+=(python3-yaml)
# PostgreSQL's server binaries for scripts/test-vtasks.sh (initdb is not on PATH).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install Rust (rustup) first" >&2
  exit 1
fi

# Grafana's published schema types for the dashboard validator (pinned in grafana/).
npm ci --prefix grafana --no-audit --no-fund --silent

# The release binary as operators build it (scripts/build.sh), first: the real-GlitchTip
# fault matrix runs on it in the background while the CPU-bound steps run (it mostly waits
# for faults to show; its budgets are generous), so that the whole run stays short.
BINARY=$(scripts/build.sh)
log=$(mktemp)
realgt_log=$(mktemp)
status=0
# A real GlitchTip 5.x (../shared/glitchtip/lab, built once into /tmp/gtlab-ci and reused)
# through the fault matrix of issue #15, against that binary and a real Prometheus.
REALGT_EXPORTER_BIN=$BINARY scripts/test-real-glitchtip.sh >"$realgt_log" 2>&1 &
realgt_pid=$!
# Should this script stop early, the matrix stops too (its own trap ends the lab by PID).
trap 'kill "$realgt_pid" 2>/dev/null || true' EXIT

cargo fmt --all -- --check || status=1
cargo clippy --all-targets --locked -- -D warnings || status=1
cargo test --all-targets --locked 2>&1 | tee "$log" || status=1
# Each further suite prints one `NAME: N passed, N failed` line; they are added to the
# cargo tests' counts in the one closing line, which stays the last line of the output.
suite() { # NAME COMMAND...: runs a suite, keeps its tally line, fails the run when it fails
  local name=$1
  shift
  echo "== $name"
  "$@" 2>&1 | tee -a "$log" || status=1
}
# The static binary: statically linked, starts, resolves.
suite static scripts/test-static.sh "$BINARY"
# Dockerfile, compose, Kubernetes and systemd files (no container engine here: see README).
suite deploy python3 scripts/test-deploy.py "$BINARY"
# GlitchTip 6's real task library (django-vtasks from PyPI, virtualenvs cached in /tmp/vtlab)
# against that binary and a real Prometheus.
VT_EXPORTER_BIN=$BINARY suite vtasks scripts/test-vtasks.sh
# Every fuzz target for 30 s (FUZZ_SECONDS); see README "Fuzzing".
suite fuzz scripts/fuzz.sh
echo "== realgt"
wait "$realgt_pid" || status=1
tee -a "$log" <"$realgt_log"
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     /^[a-z]+: [0-9]+ passed, [0-9]+ failed/ { p += $2; f += $4 }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
rm -f "$log" "$realgt_log"
exit "$status"
