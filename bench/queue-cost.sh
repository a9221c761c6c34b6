#!/usr/bin/env bash
# The cost of one queue read on each backend, at 0 and at 1 million queued tasks:
# milliseconds per read (examples/queue_cost.rs, the reader's own code, 20 reads in a row)
# and commands or statements per read (from the server's own counters).
#
#   bash bench/queue-cost.sh            1,000,000 tasks (and a 1,000,000-key keyspace)
#   bash bench/queue-cost.sh --quick    10,000: only proves the script works
#
# Starts its own redis-server (no persistence) and PostgreSQL cluster (Debian's server
# binaries, as user postgres when root) on 127.0.0.1 with free ports, in a temporary
# folder, and ends both by PID when done. Builds the example in release mode without LTO
# (the exporter's code is the same; only the link is quicker).
#   Valkey:   {vt} layout, two last-run keys, two live workers; a 512 MiB value at a
#             last-run key (2 MiB with --quick: reason and peak RSS); then 1 M tasks in
#             {vt}:q:default; then 1 M unrelated keys besides (SCAN walks the keyspace).
#   Postgres: django-vtasks' tables (tests/fixtures/vtasks/db-backend.sql), the same
#             metadata rows; then 1 M QUEUED rows over two queues (VACUUM ANALYZE after).
set -euo pipefail

N=1000000
[[ ${1:-} == --quick ]] && N=10000
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d /tmp/glitchtip-queue-cost.XXXXXX)
chmod 755 "$W"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$W"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
# exec: a background `as_pg … &` is the program itself, so that $! is its PID.
as_pg() { if [[ $(id -u) == 0 ]]; then exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; else exec "$@"; fi; }
pg() { (as_pg "$@"); }

echo "building examples/queue_cost.rs (release, no LTO)"
(cd "$ROOT" && CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
  cargo build --release --locked --example queue_cost -q)
COST="$ROOT/target/release/examples/queue_cost"

# --- Redis/Valkey ---
RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$W" \
  --daemonize no >/dev/null &
PIDS+=($!)
R() { redis-cli -p "$RPORT" "$@"; }
for _ in $(seq 100); do R ping >/dev/null 2>&1 && break; sleep 0.05; done
now=$(date +%s)
R set '{vt}:scheduler:vtasks_last_run:uptime-dispatch-checks' "$now" >/dev/null
R set '{vt}:scheduler:vtasks_last_run:send-alert-notifications' "$now" >/dev/null
R set '{vt}:alive:w-1' 1 >/dev/null
R set '{vt}:alive:w-2' 1 >/dev/null
cat > "$W/redis.toml" <<TOML
[targets.bench]
url = "http://127.0.0.1:9"
default_checks = false
[targets.bench.queue]
url = "redis://127.0.0.1:$RPORT/0"
workers = true
timeout = "15s"
interval = "15s"
TOML
redis_case() {
  R config resetstat >/dev/null
  local out calls
  out=$("$COST" "$W/redis.toml" 20)
  calls=$(R info commandstats | awk -F'[:=,]' '/^cmdstat_/ && $1 != "cmdstat_config" && $1 != "cmdstat_info" { s += $3 } END { print s }')
  echo "valkey $1: $out, commands per read: $(( calls / 20 ))"
}
redis_case "0 tasks"
# A huge value where a last-run epoch belongs: the read fails (reply_too_large) once 1 MiB
# is buffered; the reading process's peak RSS shows what it cost.
BIG=$(( N >= 1000000 ? 512 * 1024 * 1024 : 2 * 1024 * 1024 ))
KEY='{vt}:scheduler:vtasks_last_run:uptime-dispatch-checks'
R eval "redis.call('SET', KEYS[1], string.rep('7', tonumber(ARGV[1])))" 1 "$KEY" "$BIG" >/dev/null
peak=$( { /usr/bin/time -f '%M' "$COST" "$W/redis.toml" 5 >"$W/big.json"; } 2>&1 | tail -1)
echo "valkey $(( BIG / 1024 / 1024 )) MiB last-run value: $(cat "$W/big.json"), peak RSS of the reading process: $(( peak / 1024 )) MiB"
R set "$KEY" "$(date +%s)" >/dev/null
R eval "for i = 1, tonumber(ARGV[1]) do redis.call('RPUSH', KEYS[1], i) end" 1 '{vt}:q:default' "$N" >/dev/null
redis_case "$N tasks"
# (Not DEBUG POPULATE: Redis 7 refuses DEBUG by default.)
R eval "for i = 1, tonumber(ARGV[1]) do redis.call('SET', 'cache:' .. i, 'x') end" 0 "$N" >/dev/null
echo "keys in the keyspace: $(R dbsize)"
redis_case "$N tasks and $N other keys"

# --- PostgreSQL ---
PPORT=$(free_port)
chown postgres:postgres "$W" 2>/dev/null || true
echo bench-pw > "$W/pw"; chmod 644 "$W/pw"
pg "$PG_BIN/initdb" -D "$W/pg" -U postgres -E UTF8 --locale=C --no-sync \
  --auth-local=trust --auth-host=scram-sha-256 --pwfile="$W/pw" >/dev/null
as_pg "$PG_BIN/postgres" -D "$W/pg" -p "$PPORT" -k "$W" -c listen_addresses=127.0.0.1 \
  -c fsync=off >"$W/pg.log" 2>&1 &
PIDS+=($!)
P() { pg "$PG_BIN/psql" -h "$W" -p "$PPORT" -U postgres -d glitchtip -qAtX "$@"; }
for _ in $(seq 200); do pg "$PG_BIN/psql" -h "$W" -p "$PPORT" -U postgres -d postgres -qAtc 'select 1' >/dev/null 2>&1 && break; sleep 0.1; done
pg "$PG_BIN/psql" -h "$W" -p "$PPORT" -U postgres -d postgres -qc 'CREATE DATABASE glitchtip'
P -f "$ROOT/tests/fixtures/vtasks/db-backend.sql" >/dev/null
P -c "CREATE ROLE glitchtip_exporter LOGIN PASSWORD 'bench-pw';
      GRANT SELECT ON db_queuedtask, db_vtaskmetadata TO glitchtip_exporter;
      INSERT INTO db_vtaskmetadata (key, value, expires_at) VALUES
        ('vtasks_last_run:uptime-dispatch-checks', extract(epoch from now())::text, NULL),
        ('vtasks_last_run:send-alert-notifications', extract(epoch from now())::text, NULL),
        ('worker_alive:w-1', '1', now() + interval '1 hour'),
        ('worker_alive:w-2', '1', now() + interval '1 hour');"
cat > "$W/pg.toml" <<TOML
[targets.bench]
url = "http://127.0.0.1:9"
default_checks = false
[targets.bench.queue]
url = "postgres://glitchtip_exporter@127.0.0.1:$PPORT/glitchtip"
password = { file = "$W/pw" }
timeout = "15s"
interval = "15s"
TOML
pg_case() {
  local out before after
  before=$(P -c "SELECT xact_commit FROM pg_stat_database WHERE datname = 'glitchtip'")
  out=$("$COST" "$W/pg.toml" 20)
  sleep 0.6  # the statistics collector flushes every 500 ms
  after=$(P -c "SELECT xact_commit FROM pg_stat_database WHERE datname = 'glitchtip'")
  # PostgreSQL counts one transaction at each connection start (its catalog look-ups).
  echo "postgres $1: $out, transactions per read: $(( (after - before) / 20 )) (1 connection start + 1 batch of 6 statements in 1 round trip)"
}
pg_case "0 rows"
P -c "INSERT INTO db_queuedtask (id, queue, data, status, created_at, priority)
      SELECT gen_random_uuid(), CASE WHEN i % 2 = 0 THEN 'default' ELSE 'ingest' END, '\\x00',
             'QUEUED', now() - i * interval '1 millisecond', 0
      FROM generate_series(1, $N) AS i;"
P -c "VACUUM ANALYZE db_queuedtask"
pg_case "$N rows"
echo "plan of the heaviest statement at $N rows:"
P -c "EXPLAIN (ANALYZE, COSTS OFF, TIMING ON) SELECT left(queue, 64), extract(epoch FROM min(created_at)) FROM db_queuedtask WHERE status = 'QUEUED' AND (run_after IS NULL OR run_after <= now()) GROUP BY queue ORDER BY queue LIMIT 64" | sed 's/^/  /'
P -c "EXPLAIN (ANALYZE, COSTS OFF, TIMING ON) SELECT left(queue, 64), status, count(*) FROM db_queuedtask GROUP BY queue, status ORDER BY queue, status LIMIT 64" | sed 's/^/  /'
