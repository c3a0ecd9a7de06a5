#!/usr/bin/env bash
# Re-resolves the lock files from pyproject.toml (run after changing dependencies).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
.venv/bin/python -m pip install --quiet uv
compile() { .venv/bin/uv pip compile pyproject.toml --python-version 3.11 --generate-hashes --no-header --quiet "$@"; }
compile -o requirements.lock
compile --extra dev -o requirements-dev.lock
