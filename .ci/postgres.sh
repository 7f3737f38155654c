#!/usr/bin/env bash
# PostgreSQL for the study-storage tests (tests/test_studies_postgres.py).
#
#   .ci/postgres.sh           install Debian's postgresql server binaries (non-interactive, idempotent)
#   .ci/postgres.sh start DIR start a throw-away server in DIR on a free 127.0.0.1 port and print
#                             BENCH_POSTGRES_URL=postgresql://bench@127.0.0.1:PORT/benchtest
#                             (stop it with: pg_ctl -D DIR/data -m immediate stop)
#
# The tests start their own server from these binaries (initdb into a temporary folder, as a non-root user),
# so CI only needs the first form. Debian's package may also create and start its own "main" cluster on
# port 5432; nothing here uses it.
set -euo pipefail

find_bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
  done
  if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return 0; fi
  return 1
}

install() {
  if bindir=$(find_bindir); then
    echo "postgresql already installed: $bindir"
    return 0
  fi
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
      echo "postgres.sh: not root and no sudo; install the 'postgresql' package by hand" >&2; return 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  # The server package alone (no recommends): we need its binaries, not its service.
  $sudo apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  bindir=$(find_bindir) || { echo "postgres.sh: installed, but initdb/pg_ctl not found" >&2; return 1; }
  echo "postgresql installed: $bindir"
}

start() {
  local dir=${1:?usage: postgres.sh start DIR}
  install >/dev/null
  bindir=$(find_bindir)
  mkdir -p "$dir"
  local run=()
  if [ "$(id -u)" -eq 0 ]; then
    # initdb refuses root: run the server as the package's postgres account.
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    chown postgres "$dir"
    run=(runuser -u postgres --)
  fi
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "${run[@]}" "$bindir/initdb" -D "$dir/data" -U bench -A trust -E UTF8 --no-locale --no-sync >/dev/null
  "${run[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 120 \
    -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off" start >/dev/null
  "$bindir/createdb" -h 127.0.0.1 -p "$port" -U bench benchtest
  echo "BENCH_POSTGRES_URL=postgresql://bench@127.0.0.1:$port/benchtest"
}

case "${1:-install}" in
  install) install ;;
  start) shift; start "$@" ;;
  *) echo "usage: $0 [install | start DIR]" >&2; exit 2 ;;
esac
