#!/usr/bin/env bash
# Sets up the dev environment and runs the whole test suite; extra arguments go to pytest.
# SQLite by default; PostgreSQL when KENES_TEST_DATABASE_URL names a database
# (e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/kenes_test).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
exec .venv/bin/python -m pytest "$@"
