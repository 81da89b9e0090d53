#!/usr/bin/env bash
# Debian packages the tests and the benchmark drive: nginx (the reverse-proxy example),
# caddy (the single sign-on example's forward_auth; the tests run their own, so a service
# the package starts on port 80 is stopped again when this script installed it),
# wrk (the benchmark's smoke run), curl and jq (the README's transcripts). Idempotent.
set -euo pipefail
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v caddy >/dev/null 2>&1 || missing+=(caddy)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v jq >/dev/null 2>&1 || missing+=(jq)
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq -o DPkg::Lock::Timeout=120
  apt-get install -y -qq -o DPkg::Lock::Timeout=120 "${missing[@]}" >/dev/null
  if [[ " ${missing[*]} " == *" caddy "* ]] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now caddy.service >/dev/null 2>&1 || true
  fi
fi
