#!/usr/bin/env bash
# Run authgate, a demo backend and nginx (auth_request) together:
#   examples/nginx/run.sh            then open http://127.0.0.1:8080/
# authgate on :8000, the backend on :9000, nginx on :8080 — each overridable:
#   AUTHGATE_PORT=8100 APP_PORT=9100 NGINX_PORT=8180 AUTHGATE_DATABASE_URL=sqlite:///demo.db \
#     examples/nginx/run.sh
# Ctrl-C stops all three. Create a user first: .venv/bin/authgate users create alice
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
AUTHGATE_PORT=${AUTHGATE_PORT:-8000}
APP_PORT=${APP_PORT:-9000}
NGINX_PORT=${NGINX_PORT:-8080}
prefix=$(mktemp -d)
trap 'kill 0' EXIT
# The browser talks to nginx, so that is the public origin; nginx is the trusted proxy.
export AUTHGATE_PUBLIC_URL=${AUTHGATE_PUBLIC_URL:-http://127.0.0.1:$NGINX_PORT}
export AUTHGATE_TRUSTED_PROXIES=${AUTHGATE_TRUSTED_PROXIES:-127.0.0.1}
export AUTHGATE_DATABASE_URL=${AUTHGATE_DATABASE_URL:-sqlite:///./authgate.db}
"$root/.venv/bin/authgate" serve --port "$AUTHGATE_PORT" &
"$root/.venv/bin/python" "$here/backend.py" "$APP_PORT" &
sed -e "s#@PREFIX@#$prefix#g" -e "s#@LISTEN@#127.0.0.1:$NGINX_PORT#" \
    -e "s#@AUTHGATE@#127.0.0.1:$AUTHGATE_PORT#" -e "s#@APP@#127.0.0.1:$APP_PORT#" \
    "$here/nginx.conf.template" > "$prefix/nginx.conf"
nginx -p "$prefix" -c "$prefix/nginx.conf"
