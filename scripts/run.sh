#!/usr/bin/env bash
# Sets up, migrates, loads the demo data and serves Kenes on http://127.0.0.1:8000 (SQLite by default).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh runtime
.venv/bin/kenes migrate
.venv/bin/kenes demo-data
exec .venv/bin/kenes serve --host "${KENES_HOST:-127.0.0.1}" --port "${KENES_PORT:-8000}"
