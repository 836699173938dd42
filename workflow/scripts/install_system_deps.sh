#!/usr/bin/env bash
# Install the Debian packages the pipeline (run) or the test suite (test) needs, when apt is
# available and we are allowed to (root, or passwordless sudo). Otherwise say what is missing.
set -euo pipefail
mode=${1:-run}
packages=(dataset-fashion-mnist)
if [[ $mode == test ]]; then
  packages+=(slurmctld slurmd slurm-client munge chromium)
fi
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "note: apt-get not found; install these yourself if you need them: ${missing[*]}" >&2
  exit 0
fi
sudo=""
if [[ $(id -u) -ne 0 ]]; then
  if sudo -n true 2>/dev/null; then sudo="sudo -n"; else
    echo "note: not root and no passwordless sudo; please run: sudo apt-get install ${missing[*]}" >&2
    exit 0
  fi
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null || echo "warning: apt-get update failed" >&2
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
  || { echo "error: apt-get install ${missing[*]} failed" >&2; exit 1; }
