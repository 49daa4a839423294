#!/usr/bin/env bash
# Installs what the web demo and its browser test (tests/test_web.py) need, on Debian/Ubuntu:
# Chromium from apt (as root, only when /usr/bin/chromium is absent), and onnxruntime-web and pako
# (zlib, for the outlier score's PNG size) from npm, exactly as pinned in apps/web/package-lock.json
# (skipped when node_modules already matches it). pako stays at 2.1.0: its level-9 deflate is byte
# for byte Python's zlib.compress(raw, 9), which 3.0.3's is not (tests/test_web.py checks it).
# Safe to run again. Playwright, which drives Chromium, comes with `pip install -e ".[test]"`.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: Chromium is missing and installing it needs root: run 'sudo $0'" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends chromium
fi

if ! command -v npm >/dev/null; then
  echo "error: npm is missing: install Node.js 18 or newer (with npm), then run $0 again" >&2
  exit 1
fi
# npm records what it installed in node_modules/.package-lock.json; reinstall when the lock is newer.
if [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --ignore-scripts  # no install script is needed by the page
fi
