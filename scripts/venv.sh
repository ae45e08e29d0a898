#!/usr/bin/env bash
# Create .venv with Python >= 3.11 and install Pulse with its extras. Debian ships venv
# support separately (python3-venv); install it when missing.
set -euo pipefail
VENV=${VENV:-.venv}
PY=""
for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        PY=$candidate; break
    fi
done
[ -n "$PY" ] || { echo "Pulse needs Python 3.11 or newer" >&2; exit 1; }
if [ ! -x "$VENV/bin/python" ]; then
    if ! "$PY" -m venv "$VENV" 2>/dev/null; then
        rm -rf "$VENV"
        SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
        ver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
        $SUDO apt-get update -qq
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python$ver-venv" >/dev/null \
            || $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        "$PY" -m venv "$VENV"
    fi
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".[dev,embedded]"
