#!/usr/bin/env bash
# Single sign-on across subdomains, on this machine: nginx (TLS, a self-signed certificate
# made here) serving auth.example.localhost, app.example.localhost and admin.example.localhost,
# authgate with COOKIE_DOMAIN=example.localhost, and the demo backend for both apps.
#   examples/sso/run.sh         then open https://app.example.localhost:8443/ in Chromium or
#                               Firefox (both resolve *.localhost to this machine), accept the
#                               certificate, sign in, then open https://admin.example.localhost:8443/
# authgate on :8000, the backend on :9000, nginx on :8443 — each overridable:
#   AUTHGATE_PORT=8100 APP_PORT=9100 NGINX_PORT=9443 examples/sso/run.sh
# Ctrl-C stops all three. Create a user first: .venv/bin/authgate users create alice
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
AUTHGATE_PORT=${AUTHGATE_PORT:-8000}
APP_PORT=${APP_PORT:-9000}
NGINX_PORT=${NGINX_PORT:-8443}
DOMAIN=${DOMAIN:-example.localhost}
prefix=$(mktemp -d)
trap 'kill 0' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj "/CN=$DOMAIN" -addext "subjectAltName=DNS:$DOMAIN,DNS:*.$DOMAIN" \
    -keyout "$prefix/key.pem" -out "$prefix/cert.pem" 2>/dev/null
# The browser signs in at auth.$DOMAIN (PUBLIC_URL); the session cookie has Domain=$DOMAIN;
# nginx is the trusted proxy; the two apps may write with the CSRF token.
export AUTHGATE_PUBLIC_URL=${AUTHGATE_PUBLIC_URL:-https://auth.$DOMAIN:$NGINX_PORT}
export AUTHGATE_COOKIE_DOMAIN=$DOMAIN
export AUTHGATE_TRUSTED_PROXIES=${AUTHGATE_TRUSTED_PROXIES:-127.0.0.1}
export AUTHGATE_ALLOWED_ORIGINS=${AUTHGATE_ALLOWED_ORIGINS:-https://app.$DOMAIN:$NGINX_PORT,https://admin.$DOMAIN:$NGINX_PORT}
export AUTHGATE_DATABASE_URL=${AUTHGATE_DATABASE_URL:-sqlite:///./authgate.db}
"$root/.venv/bin/authgate" serve --port "$AUTHGATE_PORT" &
"$root/.venv/bin/python" "$root/examples/nginx/backend.py" "$APP_PORT" &
sed -e "s#@PREFIX@#$prefix#g" -e "s#@LISTEN@#127.0.0.1:$NGINX_PORT#" -e "s#@DOMAIN@#$DOMAIN#g" \
    -e "s#@AUTHGATE@#127.0.0.1:$AUTHGATE_PORT#" -e "s#@APP@#127.0.0.1:$APP_PORT#" \
    -e "s#@CERT@#$prefix/cert.pem#" -e "s#@KEY@#$prefix/key.pem#" \
    "$here/nginx.conf.template" > "$prefix/nginx.conf"
nginx -p "$prefix" -c "$prefix/nginx.conf"
