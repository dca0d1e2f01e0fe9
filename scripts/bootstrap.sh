# Sourced by scripts/demo and scripts/test: find Python >= 3.12, make .venv, install privproxy into it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PRIVPROXY_VENV:-$ROOT/.venv}"

is_ok() { [ -n "$1" ] && "$1" -c 'import sys, venv; raise SystemExit(sys.version_info < (3, 12))' >/dev/null 2>&1; }

find_python() {
  local c
  for c in "${PRIVPROXY_PYTHON:-}" python3.13 python3.12 python3 python; do
    if [ -n "$c" ] && command -v "$c" >/dev/null 2>&1 && is_ok "$(command -v "$c")"; then command -v "$c"; return 0; fi
  done
  # pyenv keeps versions that are installed but not selected; use one without changing the user's selection.
  local roots=("$HOME/.pyenv")
  if command -v pyenv >/dev/null 2>&1; then roots=("$(pyenv root)" "${roots[@]}"); fi
  for r in "${roots[@]}"; do
    for c in $(ls -d "$r"/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -rV); do
      if is_ok "$c"; then echo "$c"; return 0; fi
    done
  done
  for c in /usr/local/bin/python3.1[2-9] /usr/bin/python3.1[2-9]; do
    if [ -x "$c" ] && is_ok "$c"; then echo "$c"; return 0; fi
  done
  return 1
}

if ! [ -x "$VENV/bin/python" ] || ! is_ok "$VENV/bin/python"; then
  if ! PY="$(find_python)"; then
    cat >&2 <<'MSG'
privproxy needs Python 3.12 or newer (mitmproxy 12 requires it), and none was found.
Install one, for example:
  Debian/Ubuntu:  sudo apt-get install python3.12 python3.12-venv   (or a newer python3)
  pyenv:          pyenv install 3.12
  macOS:          brew install python@3.12
or point PRIVPROXY_PYTHON at an interpreter: PRIVPROXY_PYTHON=/path/to/python3.12 scripts/test
MSG
    exit 1
  fi
  echo "privproxy: creating $VENV with $PY ($("$PY" -V 2>&1))" >&2
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
fi

STAMP="$VENV/.privproxy-installed"
WANT="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]; then
  echo "privproxy: installing dependencies into $VENV" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[test]" >&2
  echo "$WANT" > "$STAMP"
fi

# The package is installed editable: with PYTHONDONTWRITEBYTECODE set (some CI images and shells) Python would
# compile every module on every run, which is a third of `privproxy filter-log`'s start-up. Write the bytecode
# once here (compileall writes it whatever that variable says, and skips modules that are up to date). A tree
# that cannot be written to (read-only, another owner) still runs: only slower to start, and said so.
"$VENV/bin/python" -m compileall -q -j 0 "$ROOT/addons/privproxy" >/dev/null \
  || echo "privproxy: could not write bytecode under $ROOT/addons (start-up compiles it each run)" >&2
