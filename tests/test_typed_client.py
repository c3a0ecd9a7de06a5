"""The TypeScript client of clients/src, typed from this app's OpenAPI document, against a real
server: it logs in, lists questionnaires, submits a response and reads an aggregate.

.ci/run compiles it with tsc --strict; this runs it. Needs node and clients/node_modules
(`cd clients && npm ci`): skipped without them, a failure when CI is set.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi import FastAPI

from app.models import examples as ex
from app.models.auth import Role
from tests.conftest import ROOT
from tests.factories import DEFAULT_PASSWORD, create_questionnaire, create_user
from tests.servers import running_server

CLIENTS = ROOT / "clients"
ANSWERS = {"heard_of_hearings": "yes", "priorities": ["roads", "water"], "trust": 4}


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own commands
        command, cwd=CLIENTS, capture_output=True, text=True, timeout=180, check=False
    )


async def test_the_typescript_client_talks_to_a_real_server(
    app: FastAPI, database_url: str, tmp_path: Path
) -> None:
    if shutil.which("node") is None or not (CLIENTS / "node_modules" / "typescript").is_dir():
        missing = "node and clients/node_modules (cd clients && npm ci)"
        if os.environ.get("CI"):
            pytest.fail(f"needs {missing}")
        pytest.skip(f"needs {missing}")
    dumped = subprocess.run(  # noqa: S603 - our own command
        [sys.executable, "-m", "app.openapi", str(CLIENTS / "generated" / "openapi.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert dumped.returncode == 0, dumped.stderr
    npm = shutil.which("npm") or "npm"
    for script in ("types", "build"):
        built = _run(npm, "run", "-s", script)
        assert built.returncode == 0, built.stdout + built.stderr

    coordinator = await create_user(app, Role.coordinator, email="ts-client@example.org")
    await create_questionnaire(app, definition=ex.QUESTIONNAIRE_CREATE, publish=True)
    with running_server(database_url, tmp_path / "server.log") as server:
        ran = _run(
            "node",
            "dist/main.js",
            server.base,
            coordinator.email,
            DEFAULT_PASSWORD,
            ex.QUESTIONNAIRE_CREATE["slug"],
            json.dumps(ANSWERS),
        )
    assert ran.returncode == 0, ran.stderr
    seen = json.loads(ran.stdout.strip().splitlines()[-1])
    print("typescript client:", json.dumps(seen))  # noqa: T201 - with -s
    assert seen["expires_in"] == 3600
    assert seen["published"] == 1
    assert seen["replay"] is False
    assert seen["location"].startswith("/api/v1/responses/")
    assert seen["stored_answers"] == ANSWERS
    assert seen["n_responses"] == 1
    # One respondent: every cell is under min_cell, so shown as suppressed.
    assert seen["questions"] == [
        "heard_of_hearings: 0 cells shown of 1",
        "priorities: 0 cells shown of 1",
        "trust: 0 cells shown of 1",
    ]
