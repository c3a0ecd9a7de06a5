#!/usr/bin/env bash
# Creates .venv from the lock file (runtime, or runtime + dev tools with "dev") and installs kenes.
# Re-running is cheap: nothing is reinstalled while the lock file is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

kind=${1:-runtime}
lock=requirements.lock
[ "$kind" = dev ] && lock=requirements-dev.lock
python=${PYTHON:-python3}

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "Kenes needs Python 3.11 or newer as '$python' (set PYTHON=... to choose another)" >&2
  exit 1
fi

[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.installed-$kind
want=$(cat "$lock" pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r "$lock"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
  echo "$want" > "$stamp"
fi
