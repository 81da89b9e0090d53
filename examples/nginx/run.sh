#!/usr/bin/env bash
# Run authgate, a demo backend and nginx (auth_request) together:
#   examples/nginx/run.sh            then open http://127.0.0.1:8080/
# authgate on :8000, the backend on :9000, nginx on :8080. Ctrl-C stops all three.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
prefix=$(mktemp -d)
trap 'kill 0' EXIT
export AUTHGATE_PUBLIC_URL=http://127.0.0.1:8080 AUTHGATE_TRUSTED_PROXIES=127.0.0.1
"$root/.venv/bin/authgate" serve --port 8000 &
"$root/.venv/bin/python" "$here/backend.py" 9000 &
sed -e "s#@PREFIX@#$prefix#g" -e "s#@LISTEN@#127.0.0.1:8080#" \
    -e "s#@AUTHGATE@#127.0.0.1:8000#" -e "s#@APP@#127.0.0.1:9000#" \
    "$here/nginx.conf.template" > "$prefix/nginx.conf"
nginx -p "$prefix" -c "$prefix/nginx.conf"
