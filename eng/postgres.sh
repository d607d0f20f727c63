#!/usr/bin/env bash
# A private PostgreSQL server for the sweep-storage tests (PeftSweep.SetStorage across machines).
#   bash eng/postgres.sh start   installs PostgreSQL when missing (as root, from the system's packages: Debian's
#                                'apt-get install -y postgresql'), starts a throw-away cluster on 127.0.0.1:$PEFT_PG_PORT
#                                and prints 'export PEFT_TEST_POSTGRES=...' on stdout for the caller to eval
#   bash eng/postgres.sh stop    stops that cluster (its files stay for the next start)
# Idempotent: start reuses a running cluster, stop does nothing when none runs. The cluster is separate from any
# system one (own data folder, port and socket folder), trusts local TCP connections and is never a service.
# PostgreSQL refuses to run as root, so as root the cluster belongs to the 'postgres' user the package creates.
# Logs go to stderr; when no server can be had it says why on stderr, prints nothing on stdout and exits 0, and the
# tests that need one fail under CI=true (they are inconclusive elsewhere).
set -uo pipefail

port=${PEFT_PG_PORT:-55432}
if [ "$(id -u)" -eq 0 ]; then owner=postgres; else owner=$(id -un); fi
data=${PEFT_PG_DATA:-${TMPDIR:-/tmp}/peft-postgres-$owner-$port}

log() { echo "postgres.sh: $*" >&2; }

as_owner() {
  # From /: the postgres user cannot enter a caller's private folder (e.g. a 700 mktemp clone) as its working directory.
  if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

find_bin() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r) /usr/local/pgsql/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return 0; }
  return 1
}

install_server() {
  if [ "$(id -u)" -ne 0 ]; then log "PostgreSQL is not installed and this user cannot install it."; return 1; fi
  if ! command -v apt-get >/dev/null 2>&1; then log "PostgreSQL is not installed and there is no apt-get."; return 1; fi
  log "installing PostgreSQL (apt-get install -y postgresql)..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q postgresql >&2 || { apt-get update -q >&2 && apt-get install -y -q postgresql >&2; }
}

start() {
  local bin
  bin=$(find_bin) || { install_server && bin=$(find_bin); } || { log "no PostgreSQL server; skipping."; return 0; }
  if ! as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    if [ ! -s "$data/PG_VERSION" ]; then
      mkdir -p "$data" && chmod 700 "$data"
      [ "$(id -u)" -eq 0 ] && chown postgres: "$data"
      as_owner "$bin/initdb" -D "$data" -U "$owner" --auth=trust -E UTF8 >/dev/null \
        || { log "initdb failed in $data"; return 0; }
    fi
    # The socket goes in the data folder: /var/run/postgresql may not exist or belong to another user.
    as_owner "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
      -o "-p $port -k $data -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null \
      || { log "the server did not start; see $data/server.log"; tail -n 5 "$data/server.log" >&2; return 0; }
    log "started PostgreSQL ($("$bin/postgres" --version)) on 127.0.0.1:$port, data in $data"
  else
    log "PostgreSQL already running on 127.0.0.1:$port (data in $data)"
  fi
  echo "export PEFT_TEST_POSTGRES='Host=127.0.0.1;Port=$port;Username=$owner;Database=postgres'"
}

stop() {
  local bin
  bin=$(find_bin) || return 0
  if as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_owner "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null && log "stopped PostgreSQL on port $port"
  fi
  return 0
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
