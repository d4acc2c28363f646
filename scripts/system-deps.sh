#!/usr/bin/env bash
# Debian tools the tests drive for real: Prometheus + promtool (scrape and lint tests) and
# docker-compose 1.x (compose file validation), and Chromium with its driver (the web page's
# browser tests, driven by Selenium; no browser download). Installs only what is missing; needs root.
set -euo pipefail
missing=()
command -v promtool >/dev/null && command -v prometheus >/dev/null || missing+=(prometheus)
command -v docker-compose >/dev/null || missing+=(docker-compose)
# kubectl renders the Kubernetes overlays (tests/e2e/test_kubernetes.py). Debian's
# kubernetes-client (1.20) bundles a kustomize too old for them, so it is not installed here.
command -v kubectl >/dev/null \
  || echo "note: no kubectl >= 1.24 on PATH: the Kubernetes render tests will skip" >&2
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing Debian packages: ${missing[*]} (run: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
