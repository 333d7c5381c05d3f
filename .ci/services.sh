#!/usr/bin/env bash
# Installs (when missing) and starts PostgreSQL and Redis on loopback for the tests, and prints
# the environment the tests read. Safe to run twice. Used by .ci/run; developers may run it too:
#   eval "$(bash .ci/services.sh)"
set -euo pipefail

need=()
command -v pg_lsclusters >/dev/null 2>&1 || need+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "${need[@]}" >&2
fi

version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h | grep -q "^$version main"; then
  pg_createcluster "$version" main >&2
fi
if ! pg_lsclusters -h | grep "^$version main" | grep -q online; then
  pg_ctlcluster "$version" main start >&2
fi
for _ in $(seq 1 30); do
  pg_isready -q -h 127.0.0.1 -p 5432 && break
  sleep 1
done
as_postgres() { runuser -u postgres -- "$@"; }
as_postgres psql -q -tAc "SELECT 1 FROM pg_roles WHERE rolname='stagekeeper'" | grep -q 1 ||
  as_postgres psql -q -c "CREATE ROLE stagekeeper LOGIN PASSWORD 'stagekeeper' CREATEDB" >&2
as_postgres psql -q -tAc "SELECT 1 FROM pg_database WHERE datname='stagekeeper_test'" | grep -q 1 ||
  as_postgres createdb -O stagekeeper stagekeeper_test >&2

if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
  redis-server --bind 127.0.0.1 --port 6379 --save '' --appendonly no --daemonize yes >&2
fi
for _ in $(seq 1 30); do
  redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break
  sleep 0.5
done

echo "export STAGEKEEPER_TEST_POSTGRES_URL=postgresql+asyncpg://stagekeeper:stagekeeper@127.0.0.1:5432/stagekeeper_test"
echo "export STAGEKEEPER_TEST_REDIS_URL=redis://127.0.0.1:6379/15"
