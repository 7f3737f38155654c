#!/usr/bin/env bash
# Headless Chromium for the HTML report test (tests/test_report.py renders the page into a screenshot).
# Installs Debian's chromium package (non-interactive, idempotent); the test skips with a reason without it.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  echo "chromium already installed: $(command -v chromium || command -v chromium-browser)"
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "chromium.sh: not root and no sudo; install the 'chromium' package by hand" >&2; exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq chromium >/dev/null
echo "chromium installed: $(command -v chromium)"
