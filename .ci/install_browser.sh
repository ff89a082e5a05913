#!/usr/bin/env bash
# Install headless Chromium and its WebDriver (Debian packages) for the browser test of the
# HTML report (tests/test_report.py, marker `browser`). Idempotent: does nothing when both
# /usr/bin/chromium and /usr/bin/chromedriver are present. Needs root (CI runs as root).
set -euo pipefail

if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
    echo "install_browser: chromium and chromedriver already present"
    exit 0
fi

SUDO=""
if [[ "$(id -u)" != "0" ]]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver fonts-dejavu-core

/usr/bin/chromium --version
/usr/bin/chromedriver --version
