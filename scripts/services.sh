#!/usr/bin/env bash
# Make sure PostgreSQL (127.0.0.1:5432, database "test") and Redis (127.0.0.1:6379) run.
# In CI (CI=1/true/yes/on, any case) a service that cannot be started is an error, never a skip.
set -uo pipefail

# The same rule as tests/conftest.py in_ci().
in_ci() { case "$(printf '%s' "${CI:-}" | tr -d '[:space:]' | tr '[:upper:]' '[:lower:]')" in 1|true|yes|on) return 0;; *) return 1;; esac; }

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if ! pg_up && command -v pg_ctlcluster >/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  for _ in $(seq 1 50); do pg_up && break; sleep 0.2; done
fi
if ! redis_up && command -v redis-server >/dev/null; then
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  for _ in $(seq 1 50); do redis_up && break; sleep 0.2; done
fi

status=0
if pg_up; then echo "postgresql: up"; else echo "postgresql: DOWN"; status=1; fi
if redis_up; then echo "redis: up"; else echo "redis: DOWN"; status=1; fi
if [ "$status" -ne 0 ] && in_ci; then
  echo "services missing in CI: failing" >&2
  exit 1
fi
exit 0
