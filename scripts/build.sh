#!/usr/bin/env bash
# Builds the release binary as operators run it and prints its path.
#
#   scripts/build.sh             → target/<host triple>/release/glitchtip-exporter
#
# On Linux with glibc the binary is statically linked and not position-independent (as
# Debian's blackbox_exporter and prometheus are): one file that runs on any Linux of the
# same architecture, and no relocated pages, so a smaller resident size. Host names are
# then looked up through /etc/hosts and DNS only (see static_name_service in src/main.rs).
# Elsewhere it is a plain `cargo build --release`. Cargo's output goes to stderr.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HOST=$(rustc -vV | sed -n 's/^host: //p')
case "$HOST" in
  *-linux-gnu*)
    # --target keeps the flags off build scripts and proc macros, which cannot be static.
    export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static -C relocation-model=static"
    (cd "$ROOT" && cargo build --release --locked --target "$HOST" --bin glitchtip-exporter >&2)
    echo "${CARGO_TARGET_DIR:-$ROOT/target}/$HOST/release/glitchtip-exporter"
    ;;
  *)
    (cd "$ROOT" && cargo build --release --locked --bin glitchtip-exporter >&2)
    echo "${CARGO_TARGET_DIR:-$ROOT/target}/release/glitchtip-exporter"
    ;;
esac
