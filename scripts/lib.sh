# Shared by the scripts behind the Makefile and .ci/run: paths, ports, and small helpers.
# Sourced, never run. Everything here honours the same environment variables as the services.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="${HODEI_STATE_DIR:-$ROOT/.hodei}"
LOG_DIR="$STATE_DIR/logs"
SERVICES=(orchestrator scheduler worker-manager)
DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/hodei}"
NATS_URL="${NATS_URL:-nats://127.0.0.1:4222}"

say() { printf '\033[1m==>\033[0m %s\n' "$*"; }
warn() { printf '\033[33mwarning:\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# Default ports as in packages/platform/src/config.ts, overridable the same way.
service_port() {
  case "$1" in
    orchestrator) echo "${HODEI_ORCHESTRATOR_PORT:-8080}" ;;
    scheduler) echo "${HODEI_SCHEDULER_PORT:-8081}" ;;
    worker-manager) echo "${HODEI_WORKER_MANAGER_PORT:-8082}" ;;
    *) die "unknown service $1" ;;
  esac
}
service_url() { echo "http://127.0.0.1:$(service_port "$1")"; }
pid_file() { echo "$STATE_DIR/$1.pid"; }
log_file() { echo "$LOG_DIR/$1.log"; }

# host and port of a URL (postgres://…, nats://…), defaults per scheme.
url_host() { node -e 'const u = new URL(process.argv[1]); process.stdout.write(u.hostname.replace(/^\[|\]$/g, ""))' "$1"; }
url_port() { node -e 'const u = new URL(process.argv[1]); process.stdout.write(u.port || process.argv[2])' "$1" "$2"; }
is_local_host() { [[ "$1" == 127.0.0.1 || "$1" == localhost || "$1" == ::1 ]]; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# pid of a pid file when that process is alive, else nothing (and a failing status).
live_pid() {
  local f="$1" pid
  [[ -f "$f" ]] || return 1
  pid="$(tr -dc '0-9' <"$f")"
  [[ -n "$pid" ]] && alive "$pid" && echo "$pid"
}

# Whether the process runs. A zombie (exited, not yet reaped by its parent: a shell or a container
# init that does not reap) answers kill -0 but runs nothing, and must not pass for a service.
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0 # no /proc: kill -0 decides
  [[ "${stat##*) }" != Z* ]]
}

# HTTP status of a GET (000 when nothing answers).
http_status() { curl -s -o /dev/null -w '%{http_code}' --max-time "${2:-2}" "$1" || true; }

# Waits up to $2 seconds for the command "$3…" to succeed.
wait_for() {
  local what="$1" timeout="$2" start=$SECONDS
  shift 2
  until "$@"; do
    ((SECONDS - start >= timeout)) && return 1
    sleep 0.3
  done
}

# SIGTERM, up to $3 seconds (default 15) of grace, then SIGKILL; removes the pid file.
stop_pid_file() {
  local name="$1" file="$2" grace="${3:-15}" pid start
  if ! pid="$(live_pid "$file")"; then
    [[ -f "$file" ]] && { rm -f "$file"; echo "$name: not running (stale pid file removed)"; }
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  start=$SECONDS
  while alive "$pid"; do
    if ((SECONDS - start >= grace)); then
      warn "$name (pid $pid) still running after ${grace}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  rm -f "$file"
  echo "$name: stopped (pid $pid)"
}

# Runs a command in the background, detached from the terminal, output appended to a log.
spawn_bg() {
  local pidfile="$1" log="$2"
  shift 2
  mkdir -p "$(dirname "$log")" "$(dirname "$pidfile")"
  (
    # it keeps no descriptor of whoever started it: under `flock LOCK make start-services` the
    # services would otherwise hold LOCK for as long as they run
    local fd
    for fd in $(ls "/proc/$BASHPID/fd"); do
      if ((fd > 2)); then eval "exec $fd>&-"; fi
    done
    exec setsid nohup "$@" >>"$log" 2>&1 </dev/null
  ) &
  echo $! >"$pidfile"
}
