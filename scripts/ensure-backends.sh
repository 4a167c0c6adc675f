#!/usr/bin/env bash
# Make sure the real Prometheus and Alertmanager binaries the tests start are installed
# (Debian packages prometheus, prometheus-alertmanager). Installs them when running as root;
# otherwise says what to run.
set -euo pipefail
need=()
for bin in prometheus promtool; do command -v "$bin" >/dev/null || need+=(prometheus); done
for bin in prometheus-alertmanager amtool; do
  command -v "$bin" >/dev/null || command -v alertmanager >/dev/null || need+=(prometheus-alertmanager)
done
if ((${#need[@]} == 0)); then exit 0; fi
mapfile -t pkgs < <(printf '%s\n' "${need[@]}" | sort -u)
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  echo "Installing ${pkgs[*]} (Debian packages) for the backend tests..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null
  # The packages' services are not wanted: tests start their own instances on free loopback ports.
  for svc in prometheus prometheus-alertmanager prometheus-node-exporter; do
    (command -v service >/dev/null && service "$svc" stop >/dev/null 2>&1) || true
  done
else
  cat >&2 <<MSG
The backend tests need the Prometheus and Alertmanager binaries, which are missing: ${pkgs[*]}.
Install them with:   sudo apt-get install prometheus prometheus-alertmanager
(or put prometheus, promtool, alertmanager and amtool on PATH). Without them those tests are
skipped locally and fail under CI=true.
MSG
fi
