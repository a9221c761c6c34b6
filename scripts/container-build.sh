#!/usr/bin/env bash
# The Dockerfile's build step, kept in one script so that the test suite runs exactly what
# the image build runs (scripts/test-deploy.py executes the Dockerfile's RUN lines as
# written): builds the static release binary with scripts/build.sh and puts it, with an
# empty state directory, under OUT_DIR.
#
#   scripts/container-build.sh OUT_DIR
set -euo pipefail
OUT=${1:?usage: container-build.sh OUT_DIR}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BINARY=$("$ROOT/scripts/build.sh")
mkdir -p "$OUT/state"
install -m 0755 "$BINARY" "$OUT/glitchtip-exporter"
"$OUT/glitchtip-exporter" --version
