#!/usr/bin/env bash
# Installs the real parts haproxy-weighter runs against on Debian 12 (HAProxy, socat, carbon-cache,
# graphite-web), without leaving their system services running: the tests and the lab start their
# own copies on free loopback ports. Safe to run again: it skips apt when all are installed.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

section() {
  printf '\n==== %s ====\n' "$*"
}

fail() {
  printf 'ERROR: %s\n' "$*" >&2
  exit 1
}

PACKAGES=(haproxy socat graphite-carbon graphite-web)
# Units the Debian packages enable and start on installation. The tests start their own
# processes on free loopback ports and temp directories; system copies would only compete for
# CPU and write to /var/lib/graphite, so a machine this script provisions does not run them.
SYSTEM_UNITS=(haproxy.service carbon-cache.service)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@"
  else
    fail "root is needed to run: $*"
  fi
}

is_installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

section "System packages: ${PACKAGES[*]}"
missing=()
for package in "${PACKAGES[@]}"; do
  is_installed "$package" || missing+=("$package")
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "all installed, skipping apt-get"
else
  echo "missing: ${missing[*]}"
  # Keep maintainer scripts from starting the system services at all while we install (the
  # standard policy layer honoured by invoke-rc.d and deb-systemd-invoke). An existing policy,
  # as in container images, is left as it is.
  created_policy=false
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
    created_policy=true
    trap 'as_root rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${PACKAGES[@]}"
  if [ "$created_policy" = true ]; then
    as_root rm -f /usr/sbin/policy-rc.d
    trap - EXIT
  fi
  if [ -d /run/systemd/system ]; then
    for unit in "${SYSTEM_UNITS[@]}"; do
      as_root systemctl disable --now "$unit" >/dev/null 2>&1 || true
      echo "$unit: $(systemctl is-active "$unit" 2>/dev/null || true), $(systemctl is-enabled "$unit" 2>/dev/null || true)"
    done
  fi
fi

for binary in /usr/sbin/haproxy /usr/bin/socat /usr/bin/carbon-cache /usr/bin/django-admin; do
  [ -x "$binary" ] || fail "$binary is missing after installation"
done
/usr/sbin/haproxy -v | sed -n '1p'
/usr/bin/socat -V | sed -n '2p'

