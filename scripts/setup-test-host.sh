#!/usr/bin/env bash
# Installs the host tools the tests use for real (mkfs, mount, loop devices, holder-scan
# comparisons). Idempotent; needs root and the Debian package registry.
set -euo pipefail
pkgs=(e2fsprogs xfsprogs util-linux mount psmisc lsof)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "host test tools present: ${pkgs[*]}"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing packages ${missing[*]}; run this script as root (or install them) — tests needing them skip with a reason" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "apt-get could not install ${missing[*]}" >&2
  exit 1
fi
echo "installed: ${missing[*]}"
