#!/usr/bin/env bash
# Installs promtool (the Prometheus rule checker and unit-test runner) for tests/monitoring.rs.
# promtool ships in Debian's `prometheus` package, whose install would also pull ~10 JavaScript
# packages, create a user and start a Prometheus server: instead this downloads the one .deb
# with `apt-get download` (Debian's registry only) and extracts just usr/bin/promtool into
# /usr/local/bin. Idempotent; needs root. Prints the time it took.
set -euo pipefail
t0=$(date +%s%N)
took() { echo "$(( ($(date +%s%N) - t0) / 1000000 )) ms"; }
dest=${PROMTOOL_DEST:-/usr/local/bin/promtool}
if command -v promtool >/dev/null 2>&1; then
  echo "promtool present: $(promtool --version 2>&1 | head -1) ($(took))"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "promtool missing; run this script as root (or install promtool) — the alert tests skip with a reason" >&2
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get download -qq prometheus >/dev/null 2>&1; then
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get download -qq prometheus >/dev/null || { echo "apt-get download prometheus failed" >&2; exit 1; }
fi
deb=$(ls prometheus_*.deb)
dpkg-deb --fsys-tarfile "$deb" | tar -x ./usr/bin/promtool
install -m 0755 usr/bin/promtool "$dest"
echo "installed $dest from $deb ($(stat -c %s "$deb") bytes): $("$dest" --version 2>&1 | head -1) ($(took))"
