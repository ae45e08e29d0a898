#!/usr/bin/env bash
# Headless browser for the Streamlit end-to-end test: Debian's chromium + pip playwright.
# Idempotent. Never runs `playwright install` (no browser downloads): the tests launch
# /usr/bin/chromium through Playwright's executable_path.
set -euo pipefail
VENV=${VENV:-.venv}
if [ ! -x /usr/bin/chromium ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c 'import playwright, pytest_playwright' 2>/dev/null; then
    "$VENV/bin/python" -m pip install -q playwright pytest-playwright
fi
/usr/bin/chromium --version
