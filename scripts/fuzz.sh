#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ and runs each for a bounded time.
#
#   scripts/fuzz.sh                  every target, FUZZ_SECONDS (default 30) each
#   FUZZ_SECONDS=3600 scripts/fuzz.sh config
#
# Installs the nightly toolchain and cargo-fuzz when they are missing.
# The corpus of each target grows in fuzz/corpus/<target> (not committed), seeded from
# fuzz/seeds/<target>, tests/fixtures (config) and rcgen certificates (x509_chain).
# Targets run side by side, FUZZ_JOBS (default: the number of cores) at a time.
# Exits non-zero when a target crashes (panic, timeout, memory limit) and prints the
# crashing input's path: replay it with fuzz/target/<host triple>/release/<target> <path>.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-30}
rss_mb=${FUZZ_RSS_MB:-2048}
# One input taking longer than this many seconds is a hang.
unit_timeout=${FUZZ_UNIT_TIMEOUT:-10}
# Sanitizer none: the code under test is safe Rust, so ASan finds nothing a panic does not,
# and costs build time and speed. Debug assertions on: integer overflow panics.
build_flags=(--sanitizer none --debug-assertions --codegen-units 16)

# libFuzzer's instrumentation needs nightly; install what is missing, as test-all.sh does.
if ! cargo +nightly --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

cd fuzz
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

start=$(date +%s)
cargo +nightly fuzz build "${build_flags[@]}"
triple=$(rustc +nightly -vV | sed -n 's/^host: //p')
echo "fuzz: built in $(($(date +%s) - start)) s"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export FUZZ_SCRATCH="$scratch"

seed() {
  local target=$1 corpus=corpus/$1
  mkdir -p "$corpus" "artifacts/$target"
  if [ -d "seeds/$target" ]; then cp -n seeds/"$target"/* "$corpus"/; fi
  if [ "$target" = config ]; then
    cp -n ../exporter.toml "$corpus/exporter.toml"
    for f in ../tests/fixtures/bad-configs/*.toml; do cp -n "$f" "$corpus/fixture-$(basename "$f")"; done
  fi
}

# Runs one target; its exit status is libFuzzer's (0: no crash within the time).
run() {
  local target=$1 dict=()
  [ -f "dicts/$target.dict" ] && dict=(-dict="dicts/$target.dict")
  # x509_chain writes its rcgen seed chains (made with the CA it trusts) there at start.
  # The binary itself (what `cargo fuzz run` starts), so that cargo does not look again;
  # the outer timeout catches a run that hangs outside libFuzzer's own limits.
  FUZZ_SEED_DIR=$PWD/corpus/$target timeout --kill-after=10 $((seconds + 120)) \
    "target/$triple/release/$target" -artifact_prefix="artifacts/$target/" "corpus/$target" \
    -max_total_time="$seconds" -rss_limit_mb="$rss_mb" -timeout="$unit_timeout" \
    -max_len=16384 -print_final_stats=1 "${dict[@]}" >"$scratch/$target.log" 2>&1
}

# libFuzzer uses one core per run: as many targets at a time as there are cores.
parallel=${FUZZ_JOBS:-$(nproc)}
for target in "${targets[@]}"; do
  seed "$target"
  while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do wait -n || true; done
  echo "fuzz: $target for ${seconds} s"
  { status=0; run "$target" || status=$?; echo "$status" >"$scratch/$target.status"; } &
done
wait

failed=()
for target in "${targets[@]}"; do
  status=$(cat "$scratch/$target.status")
  log="$scratch/$target.log"
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$log" | sed "s/^/fuzz: $target: /" || true
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$log" >&2
    artifact=$(grep -oE 'Test unit written to [^ ]+' "$log" | awk '{print $NF}' | tail -n 1)
    echo "fuzz: $target FAILED (exit $status); crashing input: fuzz/${artifact:-<none written: see the log above>}" >&2
    failed+=("$target")
  fi
done

echo "fuzz: all done in $(($(date +%s) - start)) s"
# One tally line, which scripts/test-all.sh adds to the suite's closing count.
echo "fuzz: $((${#targets[@]} - ${#failed[@]})) passed, ${#failed[@]} failed"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashed: ${failed[*]}" >&2
  exit 1
fi
