#!/usr/bin/env bash
# django-vtasks loopback lab: GlitchTip 6's worker and scheduler (the real task library,
# from the package registry) under a minimal Django 6 project, against a real redis-server
# or a real PostgreSQL, with the broker stopped and started on demand. Run as root.
#
#   lab.sh build [VERSION...]          venvs for django-vtasks 3.1.0 and 3.2.0 (cached)
#   lab.sh -n NAME create --version V --backend valkey|db [--persist yes|no] [--mode worker|embedded]
#   lab.sh -n NAME start   [broker|worker|all]      (default all)
#   lab.sh -n NAME stop    [broker|worker|all]      (default all)
#   lab.sh -n NAME restart worker
#   lab.sh -n NAME blip broker SECONDS   stop the broker, wait, start it again
#   lab.sh -n NAME status                processes, ports, scheduler keys/rows with ages
#   lab.sh -n NAME age TASK              seconds since TASK's last run (or "missing")
#   lab.sh -n NAME alive                 number of live workers (unexpired liveness keys/rows)
#   lab.sh -n NAME env                   the instance's settings (ports, URLs, files)
#   lab.sh -n NAME destroy               stop and remove the instance
#   lab.sh list | stop-every             instances of this lab dir / stop all of them
#
# LAB_DIR: $VT_LAB_DIR or /tmp/vtlab (postgres must be able to enter it: not under /root).
# NAME: $VT_INSTANCE or "default". Python: $VT_PYTHON, else pyenv's 3.12/3.13.
# Everything binds to 127.0.0.1. Every process is started detached, its PID recorded in
# LAB_DIR/inst/NAME/run/*.pid, and only those PIDs are ever signalled (PostgreSQL through
# pg_ctl, which signals the postmaster PID of its own data directory).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT="$HERE/project"
VERSIONS=(3.1.0 3.2.0)

LAB_DIR="${VT_LAB_DIR:-/tmp/vtlab}"
NAME="${VT_INSTANCE:-default}"
if [[ ${1:-} == -n ]]; then NAME=$2; shift 2; fi
[[ $NAME =~ ^[a-z0-9][a-z0-9_-]*$ ]] || { echo "lab.sh: instance name '$NAME': lowercase letters, digits, _ and -" >&2; exit 2; }

log() { printf '[vtlab %s %s] %s\n' "$(date +%H:%M:%S)" "$NAME" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

mkdir -p "$LAB_DIR" && chmod 755 "$LAB_DIR"
LAB_DIR="$(cd "$LAB_DIR" && pwd)"
INST="$LAB_DIR/inst/$NAME"
RUN="$INST/run"
LOGS="$INST/log"
PGDATA="$INST/pgdata"
PG_SOCK="$RUN/pg"
PG_BIN="${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)}"

# ---------------------------------------------------------------- venvs
find_python() {
  local p
  for p in "${VT_PYTHON:-}" "$HOME"/.pyenv/versions/3.12.*/bin/python "$HOME"/.pyenv/versions/3.13.*/bin/python \
    python3.12 python3.13; do
    [[ -n $p ]] || continue
    command -v "$p" >/dev/null 2>&1 || continue
    "$p" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { command -v "$p"; return 0; }
  done
  return 1
}

venv_of() { echo "$LAB_DIR/venv-$1"; }

# build_venv VERSION: a venv with requirements-VERSION.txt; reused while the pins match.
build_venv() {
  local v=$1 venv req stamp py
  venv=$(venv_of "$v")
  req="$HERE/requirements-$v.txt"
  [[ -f $req ]] || die "no $req (versions: ${VERSIONS[*]})"
  stamp=$(cat "$req" "$HERE/requirements-common.txt" | sha256sum | cut -c1-16)
  if [[ -f $venv/.vtlab-$stamp ]]; then return 0; fi
  # One build per venv at a time; a second caller finds it built once the lock is free.
  exec 8>"$LAB_DIR/.build-$v.lock"
  flock 8
  if [[ -f $venv/.vtlab-$stamp ]]; then exec 8>&-; return 0; fi
  py=$(find_python) || die "no Python >= 3.12 (set VT_PYTHON; pyenv 3.12/3.13 expected)"
  log "building $venv with $($py -V) (django-vtasks $v)"
  rm -rf "$venv"
  "$py" -m venv "$venv"
  (cd "$HERE" && "$venv/bin/pip" install -q --no-input -r "$req") >"$LAB_DIR/pip-$v.log" 2>&1 ||
    { tail -20 "$LAB_DIR/pip-$v.log" >&2; die "pip install -r $req failed"; }
  "$venv/bin/python" -c "import django_vtasks, django; assert django.VERSION[:2] == (6, 0)" ||
    die "$venv does not import django_vtasks with Django 6.0"
  touch "$venv/.vtlab-$stamp"
  exec 8>&-
}

# ---------------------------------------------------------------- instance config
load_inst() {
  [[ -f $INST/inst.env ]] || die "no instance '$NAME' in $LAB_DIR (lab.sh -n $NAME create ...)"
  # shellcheck disable=SC1091
  source "$INST/inst.env"
}

port_free() { ! ss -ltnH "sport = :$1" 2>/dev/null | grep -q .; }

# pick_port [TAKEN]: a free port that no instance of this lab uses (nor TAKEN).
pick_port() {
  local p taken
  taken=$(cat "$LAB_DIR"/inst/*/inst.env 2>/dev/null | sed -n 's/^VT_[A-Z]*_PORT=//p' || true)
  taken+=$'\n'${1:-}
  for _ in $(seq 100); do
    p=$((21000 + RANDOM % 20000))
    grep -qx "$p" <<<"$taken" && continue
    port_free "$p" && { echo "$p"; return 0; }
  done
  die "no free port found"
}

cmd_create() {
  local version="" backend="" persist=no mode=worker
  while [[ $# -gt 0 ]]; do
    case $1 in
      --version) version=$2; shift 2 ;;
      --backend) backend=$2; shift 2 ;;
      --persist) persist=$2; shift 2 ;;
      --mode) mode=$2; shift 2 ;;
      *) die "create: unknown option '$1'" ;;
    esac
  done
  [[ " ${VERSIONS[*]} " == *" $version "* ]] || die "create: --version ${VERSIONS[*]}, got '$version'"
  [[ $backend == valkey || $backend == db ]] || die "create: --backend valkey or db, got '$backend'"
  [[ $persist == yes || $persist == no ]] || die "create: --persist yes or no, got '$persist'"
  [[ $mode == worker || $mode == embedded ]] || die "create: --mode worker or embedded, got '$mode'"
  if [[ -f $INST/inst.env ]]; then
    (
      # shellcheck disable=SC1091
      source "$INST/inst.env"
      [[ "$VT_VERSION $VT_BACKEND $VT_PERSIST $VT_MODE" == "$version $backend $persist $mode" ]]
    ) || die "instance '$NAME' exists with other settings (lab.sh -n $NAME destroy first)"
    build_venv "$version"
    return 0
  fi
  build_venv "$version"
  mkdir -p "$RUN" "$LOGS" "$INST/state" "$INST/tmp"
  chmod 755 "$LAB_DIR/inst" "$INST" "$RUN"
  local broker_port web_port=""
  # One create at a time picks ports and writes its inst.env (creates may run in parallel).
  exec 9>"$LAB_DIR/.create.lock"
  flock 9
  broker_port=$(pick_port)
  [[ $mode == embedded ]] && web_port=$(pick_port "$broker_port")
  {
    echo "# lab instance '$NAME' (written by lab.sh create)"
    echo "VT_VERSION=$version"
    echo "VT_BACKEND=$backend"
    echo "VT_PERSIST=$persist"
    echo "VT_MODE=$mode"
    if [[ $backend == valkey ]]; then
      echo "VT_REDIS_PORT=$broker_port"
      echo "VT_VALKEY_URL=redis://127.0.0.1:$broker_port/0"
    else
      echo "VT_PG_PORT=$broker_port"
      echo "VT_PG_PASSWORD_FILE=$INST/secrets/pg-password"
      echo "VT_PG_READER_PASSWORD_FILE=$INST/secrets/pg-reader-password"
    fi
    [[ -n $web_port ]] && echo "VT_WEB_PORT=$web_port"
  } >"$INST/inst.env.tmp"
  mv "$INST/inst.env.tmp" "$INST/inst.env"
  exec 9>&-
  load_inst
  if [[ $backend == valkey ]]; then
    write_redis_conf
  else
    init_pg
  fi
  log "created: django-vtasks $version, backend $backend, persist $persist, mode $mode, broker port $broker_port"
}

# ---------------------------------------------------------------- processes by PID file
pid_alive() { # NAME MARKER
  local f="$RUN/$1.pid" pid
  [[ -s $f ]] || return 1
  pid=$(cat "$f")
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2"
}

spawn() { # NAME CMD...
  local name=$1; shift
  (cd "$PROJECT" && exec setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null) &
  echo $! >"$RUN/$name.pid"
}

stop_pid() { # NAME MARKER
  local f="$RUN/$1.pid" pid
  if ! pid_alive "$1" "$2"; then rm -f "$f"; return 0; fi
  pid=$(cat "$f")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    log "$1 (pid $pid) ignored TERM for 10 s, sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$f"
  log "$1 stopped (pid $pid)"
}

# ---------------------------------------------------------------- redis
write_redis_conf() {
  mkdir -p "$INST/redis"
  {
    echo "# lab.sh: loopback only"
    echo "bind 127.0.0.1"
    echo "protected-mode yes"
    echo "port $VT_REDIS_PORT"
    echo "daemonize no"
    echo "dir $INST/redis"
    echo 'logfile ""'
    if [[ $VT_PERSIST == yes ]]; then
      echo "appendonly yes"
      echo "appendfsync always"
      echo "save 60 1"
    else
      echo "appendonly no"
      echo 'save ""'
    fi
  } >"$INST/redis.conf"
}

redis_start() {
  pid_alive redis redis-server && return 0
  spawn redis "$(command -v redis-server)" "$INST/redis.conf"
  for _ in $(seq 100); do
    [[ $(redis-cli -h 127.0.0.1 -p "$VT_REDIS_PORT" ping 2>/dev/null) == PONG ]] && {
      log "redis on 127.0.0.1:$VT_REDIS_PORT, pid $(cat "$RUN/redis.pid")"; return 0; }
    pid_alive redis redis-server || break
    sleep 0.1
  done
  tail -5 "$LOGS/redis.log" >&2
  die "redis did not answer PING"
}

# ---------------------------------------------------------------- postgres
as_pg() { runuser -u postgres -- "$@"; }
pg_running() { as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; }
pg_psql() { as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$VT_PG_PORT" -U postgres "$@"; }

init_pg() {
  [[ -x $PG_BIN/initdb ]] || die "PostgreSQL binaries not found (PG_BIN=$PG_BIN; apt-get install postgresql)"
  id postgres >/dev/null 2>&1 || die "no OS user postgres (apt-get install postgresql)"
  runuser -u postgres -- test -x "$INST" || die "user postgres cannot enter $INST (pick a VT_LAB_DIR under /tmp)"
  mkdir -p "$INST/secrets" && chmod 700 "$INST/secrets"
  [[ -s $VT_PG_PASSWORD_FILE ]] || head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$VT_PG_PASSWORD_FILE"
  [[ -s $VT_PG_READER_PASSWORD_FILE ]] || head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$VT_PG_READER_PASSWORD_FILE"
  install -d -o postgres -g postgres -m 0700 "$PGDATA"
  as_pg "$PG_BIN/initdb" -D "$PGDATA" -U postgres -E UTF8 --locale=C.UTF-8 \
    --auth-local=peer --auth-host=scram-sha-256 >"$LOGS/initdb.log" 2>&1 ||
    { tail -5 "$LOGS/initdb.log" >&2; die "initdb failed"; }
  as_pg tee -a "$PGDATA/postgresql.conf" >/dev/null <<EOF
# lab.sh: loopback only, a throw-away cluster
listen_addresses = '127.0.0.1'
port = $VT_PG_PORT
unix_socket_directories = '$PG_SOCK'
max_connections = 60
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  pg_start
  pg_psql -c "CREATE ROLE glitchtip LOGIN PASSWORD '$(cat "$VT_PG_PASSWORD_FILE")'"
  pg_psql -c "CREATE DATABASE glitchtip OWNER glitchtip"
  # A read-only role for an outside reader (the exporter): SELECT only.
  pg_psql -c "CREATE ROLE vt_reader LOGIN PASSWORD '$(cat "$VT_PG_READER_PASSWORD_FILE")' IN ROLE pg_read_all_data"
  log "migrate"
  worker_env
  (cd "$PROJECT" && "${WENV[@]}" "$(venv_of "$VT_VERSION")/bin/python" manage.py migrate --no-input) \
    >"$LOGS/migrate.log" 2>&1 || { tail -20 "$LOGS/migrate.log" >&2; die "migrate failed"; }
}

pg_start() {
  install -d -o postgres -g postgres -m 0755 "$PG_SOCK"
  touch "$LOGS/postgres.log" && chown postgres: "$LOGS/postgres.log"
  if ! pg_running; then
    as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$LOGS/postgres.log" -w -t 60 start >/dev/null
  fi
  head -1 "$PGDATA/postmaster.pid" >"$RUN/postgres.pid"
  log "postgres on 127.0.0.1:$VT_PG_PORT, pid $(cat "$RUN/postgres.pid")"
}

pg_stop() {
  if pg_running; then
    as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w -t 60 stop >/dev/null
    log "postgres stopped"
  fi
  rm -f "$RUN/postgres.pid"
}

# ---------------------------------------------------------------- broker
broker_start() { if [[ $VT_BACKEND == valkey ]]; then redis_start; else pg_start; fi; }
broker_stop() { if [[ $VT_BACKEND == valkey ]]; then stop_pid redis redis-server; else pg_stop; fi; }
broker_up() { if [[ $VT_BACKEND == valkey ]]; then pid_alive redis redis-server; else pg_running; fi; }

# ---------------------------------------------------------------- worker (or embedded web)
# worker_env: WENV, the environment of every project process (worker, migrate).
worker_env() {
  WENV=(env DJANGO_SETTINGS_MODULE=vtlab.settings PYTHONPATH="$PROJECT" PYTHONUNBUFFERED=1
    PYTHONDONTWRITEBYTECODE=1 TMPDIR="$INST/tmp" VT_STATE_DIR="$INST/state"
    VT_BACKEND="$VT_BACKEND" VT_VALKEY_URL="${VT_VALKEY_URL:-}" VT_PG_PORT="${VT_PG_PORT:-}")
  if [[ -n ${VT_PG_PASSWORD_FILE:-} ]]; then WENV+=(VT_PG_PASSWORD="$(cat "$VT_PG_PASSWORD_FILE")"); fi
}

worker_marker() { if [[ $VT_MODE == embedded ]]; then echo "vtlab.asgi:application"; else echo "runworker"; fi; }

worker_start() {
  local py marker
  marker=$(worker_marker)
  pid_alive worker "$marker" && return 0
  py="$(venv_of "$VT_VERSION")/bin/python"
  worker_env
  echo "---- start $(date -u +%FT%TZ)" >>"$LOGS/worker.log"
  if [[ $VT_MODE == embedded ]]; then
    spawn worker "${WENV[@]}" "$py" -m uvicorn vtlab.asgi:application --host 127.0.0.1 \
      --port "$VT_WEB_PORT" --workers 1 --lifespan on --log-level info
  else
    spawn worker "${WENV[@]}" "$py" manage.py runworker --scheduler
  fi
  for _ in $(seq 30); do
    sleep 0.1
    pid_alive worker "$marker" || { tail -20 "$LOGS/worker.log" >&2; die "worker exited at start"; }
  done
  log "worker ($VT_MODE, django-vtasks $VT_VERSION) pid $(cat "$RUN/worker.pid")"
}

worker_stop() { stop_pid worker "$(worker_marker)"; }

# ---------------------------------------------------------------- status
status() {
  local now
  now=$(date +%s.%N)
  echo "instance $NAME: django-vtasks $VT_VERSION, backend $VT_BACKEND, persist $VT_PERSIST, mode $VT_MODE"
  if broker_up; then
    if [[ $VT_BACKEND == valkey ]]; then echo "broker: redis running, pid $(cat "$RUN/redis.pid"), 127.0.0.1:$VT_REDIS_PORT"
    else echo "broker: postgres running, pid $(head -1 "$PGDATA/postmaster.pid"), 127.0.0.1:$VT_PG_PORT"; fi
  else
    echo "broker: stopped"
  fi
  if pid_alive worker "$(worker_marker)"; then echo "worker: running, pid $(cat "$RUN/worker.pid")${VT_WEB_PORT:+, web 127.0.0.1:$VT_WEB_PORT}"
  else echo "worker: stopped"; fi
  broker_up || return 0
  if [[ $VT_BACKEND == valkey ]]; then
    local k v t
    redis-cli -h 127.0.0.1 -p "$VT_REDIS_PORT" --scan --pattern '{vt}:*' 2>/dev/null | sort | while read -r k; do
      t=$(redis-cli -h 127.0.0.1 -p "$VT_REDIS_PORT" type "$k")
      case $t in
        list) echo "  $k list len $(redis-cli -h 127.0.0.1 -p "$VT_REDIS_PORT" llen "$k")" ;;
        string)
          v=$(redis-cli -h 127.0.0.1 -p "$VT_REDIS_PORT" get "$k")
          if [[ $k == *vtasks_last_run:* ]]; then
            printf '  %s age %.1f s\n' "$k" "$(awk -v n="$now" -v v="$v" 'BEGIN { print n - v }')"
          else
            echo "  $k ttl $(redis-cli -h 127.0.0.1 -p "$VT_REDIS_PORT" ttl "$k") s"
          fi ;;
        *) echo "  $k $t" ;;
      esac
    done
  else
    pg_psql -d glitchtip -tA -F ' ' -c "
      SELECT '  ' || key,
             CASE WHEN key LIKE 'vtasks_last_run:%'
                  THEN 'age ' || round((extract(epoch FROM now()) - value::float8)::numeric, 1) || ' s'
                  ELSE 'expires in ' || round(extract(epoch FROM expires_at - now())::numeric, 1) || ' s' END
        FROM db_vtaskmetadata ORDER BY key;
      SELECT '  db_queuedtask ' || queue || ' ' || status || ' ' || count(*) FROM db_queuedtask GROUP BY queue, status ORDER BY queue, status;" 2>/dev/null ||
      echo "  (tables unreadable)"
  fi
}

# last_run_age TASK: seconds since the scheduler last enqueued TASK, or "missing".
last_run_age() {
  local v
  if [[ $VT_BACKEND == valkey ]]; then
    v=$(redis-cli -h 127.0.0.1 -p "$VT_REDIS_PORT" get "{vt}:scheduler:vtasks_last_run:$1" 2>/dev/null) || v=""
  else
    v=$(pg_psql -d glitchtip -tA -c "SELECT value FROM db_vtaskmetadata WHERE key = 'vtasks_last_run:$1'" 2>/dev/null) || v=""
  fi
  if [[ -z $v ]]; then echo missing; return 0; fi
  awk -v n="$(date +%s.%N)" -v v="$v" 'BEGIN { printf "%.1f\n", n - v }'
}

# alive_workers: workers whose liveness key/row has not expired.
alive_workers() {
  if [[ $VT_BACKEND == valkey ]]; then
    redis-cli -h 127.0.0.1 -p "$VT_REDIS_PORT" --scan --pattern '{vt}:alive:*' 2>/dev/null | grep -c . || true
  else
    pg_psql -d glitchtip -tA -c "SELECT count(*) FROM db_vtaskmetadata WHERE key LIKE 'worker_alive:%' AND expires_at > now()" 2>/dev/null || echo 0
  fi
}

cmd_env() {
  cat "$INST/inst.env"
  echo "VT_LAB_DIR=$LAB_DIR"
  echo "VT_INSTANCE_DIR=$INST"
}

# ---------------------------------------------------------------- main
[[ $# -ge 1 ]] || { sed -n '2,24p' "$0" >&2; exit 2; }
CMD=$1; shift
what=${1:-all}
case $CMD in
  build)
    [[ $# -gt 0 ]] || set -- "${VERSIONS[@]}"
    for v in "$@"; do build_venv "$v"; done ;;
  create) cmd_create "$@" ;;
  start)
    load_inst
    case $what in
      broker) broker_start ;;
      worker) worker_start ;;
      all) broker_start; worker_start ;;
      *) die "start: broker, worker or all" ;;
    esac ;;
  stop)
    load_inst
    case $what in
      broker) broker_stop ;;
      worker) worker_stop ;;
      all) worker_stop; broker_stop ;;
      *) die "stop: broker, worker or all" ;;
    esac ;;
  restart)
    load_inst
    [[ $what == worker ]] || die "restart: only 'worker'"
    worker_stop; worker_start ;;
  blip)
    load_inst
    [[ $what == broker && ${2:-} =~ ^[0-9]+$ ]] || die "blip: broker SECONDS"
    log "blip: broker down for $2 s"
    broker_stop
    sleep "$2"
    broker_start
    log "blip: broker back" ;;
  status) load_inst; status ;;
  age) load_inst; [[ -n ${1:-} ]] || die "age: TASK"; broker_up || die "broker stopped"; last_run_age "$1" ;;
  alive) load_inst; broker_up || die "broker stopped"; alive_workers ;;
  env) load_inst; cmd_env ;;
  destroy)
    if [[ -f $INST/inst.env ]]; then load_inst; worker_stop; broker_stop; fi
    rm -rf "$INST"; log "destroyed" ;;
  list) ls "$LAB_DIR/inst" 2>/dev/null || true ;;
  stop-every)
    for d in "$LAB_DIR"/inst/*/; do
      [[ -f $d/inst.env ]] && "$0" -n "$(basename "$d")" stop all
    done ;;
  *) die "unknown command '$CMD'" ;;
esac
