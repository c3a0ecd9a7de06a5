"""Real clients the tests drive (../shared/notes/real-clients.md): ODK's XForms engine under
Node, from clients/ (its packages pinned in clients/package-lock.json)."""

import json
import os
import shutil
import subprocess
from typing import Any

import pytest

from tests.conftest import ROOT

CLIENTS = ROOT / "clients"


def node_with_engine() -> str:
    """Node, with the engine installed: skipped without them, a failure when CI is set."""
    node = shutil.which("node")
    if node is None or not (CLIENTS / "node_modules" / "@getodk" / "xforms-engine").is_dir():
        missing = "node and clients/node_modules (cd clients && npm ci)"
        if os.environ.get("CI"):
            pytest.fail(f"needs {missing}")
        pytest.skip(f"needs {missing}")
    return node


def odk_engine_fills(
    server_url: str, form_id: str, answers: dict[str, Any], language: str | None = None
) -> dict[str, Any]:
    """clients/openrosa/engine.mjs fills the form `form_id` listed at a collector's server URL
    with `answers` and submits it twice; what it reports (payload, instance, submissions)."""
    node = node_with_engine()
    command = [node, "openrosa/engine.mjs", server_url, form_id, json.dumps(answers)]
    ran = subprocess.run(  # noqa: S603 - our own script, arguments we built
        [*command, *([language] if language else [])],
        cwd=CLIENTS,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    report: dict[str, Any] = json.loads(ran.stdout.strip().splitlines()[-1])
    return report
