"""The interactive docs work offline: Swagger UI and ReDoc in a real headless Chromium.

Needs Debian's chromium and the npm packages of clients/ (`npm ci` there); .ci/run installs both.
Elsewhere the browser test is skipped, unless CI is set, where a missing browser is a failure.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app.models.auth import Role
from tests.conftest import ROOT
from tests.factories import DEFAULT_PASSWORD, create_user
from tests.servers import running_server

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CLIENTS = ROOT / "clients"


def _browser_missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if shutil.which("node") is None:
        return "no node"
    if not (CLIENTS / "node_modules" / "playwright-core").is_dir():
        return "no clients/node_modules (cd clients && npm ci)"
    return None


async def test_docs_pages_load_only_local_files(client: httpx.AsyncClient) -> None:
    for page, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        html = (await client.get(page)).text
        assert f"/docs/assets/{asset}" in html
        assert "https://" not in html, page
        script = await client.get(f"/docs/assets/{asset}")
        assert script.status_code == 200
        assert len(script.content) > 500_000  # the real bundle, not a stub
    assert (await client.get("/docs/assets/swagger-ui.css")).status_code == 200
    assert "swagger" in (await client.get("/docs/oauth2-redirect")).text.lower()


async def test_docs_render_and_an_authorized_get_works_in_chromium(
    app: FastAPI, database_url: str, tmp_path: Path
) -> None:
    missing = _browser_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    email = "docs-reader@example.org"
    await create_user(app, Role.analyst, email=email)
    operations = sum(len(ops) for ops in app.openapi()["paths"].values())

    with running_server(database_url, tmp_path / "server.log") as server:
        run = subprocess.run(  # noqa: S603 - our own script
            ["node", str(CLIENTS / "browser" / "docs.mjs"), server.base, email, DEFAULT_PASSWORD],  # noqa: S607
            cwd=CLIENTS,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    print("browser:", json.dumps(seen))  # noqa: T201 - the figures, with -s

    assert seen["external_requests"] == []
    assert seen["swagger_title"].startswith("Kenes")
    assert seen["swagger_operations"] == operations
    assert seen["redoc_operations"] == operations
    assert seen["authorized_get"] == {
        "status": 200,
        "sent_authorization": True,
        "shown_status": "200",
        "shown_body_has_email": True,
    }
    # The only complaint allowed: ReDoc's remote logo, refused by the page's policy.
    others = [e for e in seen["console_errors"] if "cdn.redoc.ly" not in e]
    assert others == []
