# Sourced by scripts/demo and scripts/test: create or reuse .venv and install Vigil into it.
# Re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VIGIL_VENV:-$ROOT/.venv}"
EXTRAS="${1:-}"
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "Vigil needs Python 3.11; $PYTHON is $("$PYTHON" --version 2>&1). Set PYTHON=/path/to/python3.11." >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
STAMP="$VENV/.vigil-installed${EXTRAS:+-$EXTRAS}"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ]; then
  # uv installs the same packages as pip about eight times faster (parallel downloads; 10 s
  # against 85 s for the test extras on a fresh machine). pip stays the fallback for machines
  # whose package index only pip is configured for.
  [ -x "$VENV/bin/uv" ] || "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check uv || true
  if ! { [ -x "$VENV/bin/uv" ] \
      && "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" -e "$ROOT${EXTRAS:+[$EXTRAS]}"; }; then
    echo "_venv.sh: installing with pip instead of uv" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT${EXTRAS:+[$EXTRAS]}"
  fi
  touch "$STAMP"
fi
