#!/usr/bin/env bash
# Sets up, migrates, loads the demo data and serves Kenes on http://127.0.0.1:8000 (SQLite by default).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh runtime
.venv/bin/kenes migrate
.venv/bin/kenes demo-data
# A local demo admin, made at start-up only when the database has no user yet.
export KENES_BOOTSTRAP_ADMIN_EMAIL="${KENES_BOOTSTRAP_ADMIN_EMAIL:-admin@example.org}"
export KENES_BOOTSTRAP_ADMIN_PASSWORD="${KENES_BOOTSTRAP_ADMIN_PASSWORD:-kenes-demo-admin}"
echo "Kenes on http://${KENES_HOST:-127.0.0.1}:${KENES_PORT:-8000}/docs; on a fresh database you can"
echo "log in (Authorize) as $KENES_BOOTSTRAP_ADMIN_EMAIL with the password in scripts/run.sh."
exec .venv/bin/kenes serve --host "${KENES_HOST:-127.0.0.1}" --port "${KENES_PORT:-8000}"
