#!/usr/bin/env bash
# Make sure the real programs the tests drive are installed (Debian packages):
#   prometheus, promtool           -> prometheus
#   prometheus-alertmanager, amtool -> prometheus-alertmanager
#   chromium (report screenshot)   -> chromium
#   openssl (TLS test certificates) -> openssl
# Installs what is missing when running as root; otherwise says what to run.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have prometheus && have promtool || need+=(prometheus)
{ have prometheus-alertmanager || have alertmanager; } && have amtool || need+=(prometheus-alertmanager)
{ have chromium || have chromium-browser; } || need+=(chromium)
have openssl || need+=(openssl)
if ((${#need[@]} == 0)); then exit 0; fi
if [[ $(id -u) -eq 0 ]] && have apt-get; then
  echo "Installing ${need[*]} (Debian packages) for the tests..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
  # The packages' services are not wanted: tests start their own instances on free loopback ports.
  for svc in prometheus prometheus-alertmanager prometheus-node-exporter; do
    (have service && service "$svc" stop >/dev/null 2>&1) || true
  done
else
  cat >&2 <<MSG
Some tests need programs that are missing: ${need[*]}.
Install them with:   sudo apt-get install ${need[*]}
Without them those tests are skipped locally and fail under CI=true.
MSG
fi
