#!/usr/bin/env bash
# A pg_auto_failover formation on loopback: one monitor, a primary and a synchronous secondary,
# each a PostgreSQL 15 instance on its own free 127.0.0.1 port under one directory.
# For trying failover and for the chaos test (src/chaos/failover.chaos.ts); production runs the same
# three roles on three hosts with TLS and password/cert auth (docs/HA.md).
#
#   deploy/ha/pg-auto-failover.sh start DIR [MONITOR_PORT PRIMARY_PORT SECONDARY_PORT]
#       creates (or restarts) the formation in DIR; prints the multi-host URI on stdout, progress on stderr.
#   deploy/ha/pg-auto-failover.sh uri DIR        prints the multi-host URI again
#   deploy/ha/pg-auto-failover.sh state DIR      pg_autoctl show state (who is primary)
#   deploy/ha/pg-auto-failover.sh stop DIR       stops all three (keepers and PostgreSQL)
#   deploy/ha/pg-auto-failover.sh destroy DIR    stop, then remove DIR
#   deploy/ha/pg-auto-failover.sh ctl DIR ARGS…  runs `pg_autoctl ARGS…` as the formation's user and environment,
#       e.g. `ctl DIR stop --immediate --pgdata DIR/node1` to kill a node the hard way.
#
# Environment: PG_BIN (default /usr/lib/postgresql/15/bin), PG_AUTO_FAILOVER_USER (default postgres; pg_autoctl
# refuses to run as root), PG_AUTO_FAILOVER_DB (default switchboard), PG_AUTO_FAILOVER_TIMEOUT_S (default 120).
# Loopback only: trust auth, no TLS (sslmode=disable in the URI), and monitor health checks tuned to notice a
# dead primary in a few seconds instead of the default ~30 s.
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
RUN_AS=${PG_AUTO_FAILOVER_USER:-postgres}
DB_NAME=${PG_AUTO_FAILOVER_DB:-switchboard}
TIMEOUT_S=${PG_AUTO_FAILOVER_TIMEOUT_S:-120}

log() { echo "pg-auto-failover: $*" >&2; }
die() { log "$*"; exit 1; }

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}

[[ $# -ge 2 ]] || usage
command=$1
dir=$2
shift 2
[[ $dir == /* ]] || dir="$(pwd)/$dir"

monitor_pgdata=$dir/monitor
node_pgdata=("$dir/node1" "$dir/node2")

# pg_autoctl keeps its config, state and pid files under the XDG directories; keep them inside DIR so a
# formation is one directory and several can coexist.
as_owner() {
  local env=(
    "XDG_CONFIG_HOME=$dir/xdg/config"
    "XDG_DATA_HOME=$dir/xdg/data"
    "XDG_RUNTIME_DIR=$dir/xdg/run"
    "PATH=$PG_BIN:$PATH"
    "PG_CONFIG=$PG_BIN/pg_config"
    "HOME=$dir"
  )
  if [[ $EUID -eq 0 ]]; then
    runuser -u "$RUN_AS" -- env "${env[@]}" "$@"
  else
    env "${env[@]}" "$@"
  fi
}

free_port() {
  node -e "const s = require('net').createServer(); s.listen(0, '127.0.0.1', () => { console.log(s.address().port); s.close(); })"
}

# Polls a command until it succeeds or the deadline passes.
wait_for() {
  local what=$1
  shift
  local deadline=$((SECONDS + TIMEOUT_S))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out after ${TIMEOUT_S}s waiting for $what (logs in $dir/logs)"
    sleep 0.5
  done
}

# Starts `pg_autoctl create … --run` (or `pg_autoctl run`) in its own session, logging to DIR/logs/NAME.log.
start_service() {
  local name=$1
  shift
  export -f as_owner
  export dir PG_BIN RUN_AS
  setsid bash -c 'as_owner "$@"' service "$@" >>"$dir/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$dir/run/$name.pid"
}

monitor_uri() {
  as_owner pg_autoctl show uri --pgdata "$monitor_pgdata" --formation monitor
}

show_state() {
  as_owner pg_autoctl show state --pgdata "$monitor_pgdata"
}

# pg_autoctl prints the URI without a user; clients that are not libpq (node-postgres) do not default to the OS user
# name, so name the one account trust auth lets in. Retried: the config file may be mid-rewrite.
formation_uri() {
  local uri deadline=$((SECONDS + TIMEOUT_S))
  until uri=$(as_owner pg_autoctl show uri --pgdata "$monitor_pgdata" --formation default 2>/dev/null); do
    ((SECONDS < deadline)) || die "timed out reading the formation URI"
    sleep 0.5
  done
  echo "${uri/#postgres:\/\//postgres://$RUN_AS@}"
}

node_state_is() {
  # `show state` columns: Name | Node | Host:Port | TLI: LSN | Connection | Reported State | Assigned State
  local port=$1 state=$2
  show_state | awk -F'|' -v hp="127.0.0.1:$port" -v st="$state" '
    { for (i = 1; i <= NF; i++) gsub(/^ +| +$/, "", $i) }
    $3 == hp && $6 == st && $7 == st { found = 1 }
    END { exit found ? 0 : 1 }'
}

has_primary() { show_state | grep -Eq '\| +primary +\| +primary *$'; }

# pg_autoctl runs pg_basebackup without --checkpoint=fast, so the secondary's copy waits minutes for a spread
# checkpoint on the primary; an explicit CHECKPOINT there hurries it along.
checkpoint_then_is_secondary() {
  local primary_port=$1 secondary_port=$2
  as_owner "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$primary_port" -d postgres -c CHECKPOINT >/dev/null 2>&1 || true
  node_state_is "$secondary_port" secondary
}

is_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$1"; }

cmd_start() {
  local monitor_port=${1:-} primary_port=${2:-} secondary_port=${3:-}
  mkdir -p "$dir"/{logs,run,xdg/config,xdg/data,xdg/run}
  chmod 700 "$dir/xdg/run"
  [[ $EUID -eq 0 ]] && chown -R "$RUN_AS:" "$dir"
  as_owner test -w "$dir" || die "$RUN_AS cannot write to $dir: every parent directory must be searchable by $RUN_AS"

  if [[ -f $dir/ports ]]; then
    # Restart of an existing formation: same ports, `pg_autoctl run` on the existing data directories.
    read -r monitor_port primary_port secondary_port <"$dir/ports"
    log "restarting formation in $dir"
    start_service monitor pg_autoctl run --pgdata "$monitor_pgdata"
    wait_for "monitor on port $monitor_port" is_ready "$monitor_port"
    start_service node1 pg_autoctl run --pgdata "${node_pgdata[0]}"
    start_service node2 pg_autoctl run --pgdata "${node_pgdata[1]}"
    wait_for "a primary" has_primary
    formation_uri
    return
  fi

  monitor_port=${monitor_port:-$(free_port)}
  primary_port=${primary_port:-$(free_port)}
  secondary_port=${secondary_port:-$(free_port)}
  echo "$monitor_port $primary_port $secondary_port" >"$dir/ports"

  local common=(--pgctl "$PG_BIN/pg_ctl" --hostname 127.0.0.1 --auth trust --no-ssl --ssl-mode disable)

  log "monitor on 127.0.0.1:$monitor_port"
  start_service monitor pg_autoctl create monitor --pgdata "$monitor_pgdata" --pgport "$monitor_port" "${common[@]}" --run
  wait_for "monitor on port $monitor_port" is_ready "$monitor_port"
  # Defaults take ~30 s to declare a primary dead; loopback tests want seconds. Values in milliseconds.
  # ALTER SYSTEM refuses to run in a transaction block, so one -c each.
  wait_for "monitor tuning" as_owner "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$monitor_port" -d pg_auto_failover \
    -c "ALTER SYSTEM SET pgautofailover.health_check_period = 1000" \
    -c "ALTER SYSTEM SET pgautofailover.health_check_timeout = 1000" \
    -c "ALTER SYSTEM SET pgautofailover.health_check_max_retries = 1" \
    -c "ALTER SYSTEM SET pgautofailover.health_check_retry_delay = 500" \
    -c "ALTER SYSTEM SET pgautofailover.node_considered_unhealthy_timeout = 3000" \
    -c "ALTER SYSTEM SET pgautofailover.primary_demote_timeout = 5000" \
    -c "SELECT pg_reload_conf()"
  # pg_autoctl rewrites its config file while the monitor settles; a read in between fails, so retry.
  local monitor=''
  local deadline=$((SECONDS + TIMEOUT_S))
  until monitor=$(monitor_uri 2>/dev/null); do
    ((SECONDS < deadline)) || die "timed out reading the monitor URI"
    sleep 0.5
  done

  local i port
  for i in 0 1; do
    port=$primary_port
    [[ $i -eq 1 ]] && port=$secondary_port
    log "node$((i + 1)) on 127.0.0.1:$port"
    start_service "node$((i + 1))" pg_autoctl create postgres --pgdata "${node_pgdata[$i]}" --pgport "$port" \
      --pghost 127.0.0.1 --listen 127.0.0.1 --name "node$((i + 1))" --dbname "$DB_NAME" --monitor "$monitor" \
      --replication-quorum true --candidate-priority 50 "${common[@]}" --run
    if [[ $i -eq 0 ]]; then
      wait_for "node1 to be a single primary" node_state_is "$port" single
      # A primary cut off from the monitor and its standby demotes itself after this many seconds; the monitor
      # waits primary_demote_timeout (5 s above) for that before promoting, so this must stay below it.
      as_owner pg_autoctl config set --pgdata "${node_pgdata[$i]}" timeout.network_partition_timeout 3 >/dev/null
    else
      wait_for "node2 to be a secondary" checkpoint_then_is_secondary "$primary_port" "$port"
      wait_for "node1 to be primary" node_state_is "$primary_port" primary
      as_owner pg_autoctl config set --pgdata "${node_pgdata[$i]}" timeout.network_partition_timeout 3 >/dev/null
    fi
  done
  show_state >&2 || true
  formation_uri
}

cmd_stop() {
  local name pidfile pid
  # Data nodes first, so the monitor does not orchestrate a failover while they go down.
  for name in node2 node1 monitor; do
    pidfile=$dir/run/$name.pid
    [[ -f $pidfile ]] || continue
    pid=$(<"$pidfile")
    local pgdata=$monitor_pgdata
    [[ $name == node1 ]] && pgdata=${node_pgdata[0]}
    [[ $name == node2 ]] && pgdata=${node_pgdata[1]}
    if kill -0 "$pid" 2>/dev/null; then
      as_owner pg_autoctl stop --pgdata "$pgdata" --fast >/dev/null 2>&1 || true
      local deadline=$((SECONDS + 30))
      while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
      # The service runs in its own session (setsid): its pid is the process group id.
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    # A keeper killed hard may leave its postmaster behind.
    if [[ -f $pgdata/postmaster.pid ]]; then
      as_owner "$PG_BIN/pg_ctl" stop -D "$pgdata" -m immediate >/dev/null 2>&1 || true
    fi
    rm -f "$pidfile"
  done
  log "stopped formation in $dir"
}

case $command in
  start) cmd_start "$@" ;;
  uri) formation_uri ;;
  state) show_state ;;
  stop) cmd_stop ;;
  destroy)
    cmd_stop
    rm -rf "$dir"
    ;;
  ctl) as_owner pg_autoctl "$@" ;;
  *) usage ;;
esac
