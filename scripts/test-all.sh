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
LIST
# PostgreSQL's server binaries for the queue reader's database-backend tests (Debian keeps
# them off the PATH, under /usr/lib/postgresql/<version>/bin).
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need_apt+=(postgresql)
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

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
log=$(mktemp)
status=0
cargo test --all-targets --locked 2>&1 | tee "$log" || status=$?
# One closing line over every test binary (some binaries, e.g. benches in test mode, hold none).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
# The release binary as operators build it (scripts/build.sh): static, starts, resolves.
scripts/test-static.sh || status=1
exit "$status"
