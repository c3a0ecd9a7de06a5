"""Swagger UI and ReDoc served by Kenes itself: the docs work without internet.

FastAPI's own /docs and /redoc load their scripts from a CDN, which leaves blank pages where
Kenes runs on poor or closed networks. The files come from the `fastapi-offline` wheel (MIT):
it tracks Swagger UI 5 and ReDoc 2 releases (Swagger UI 5 reads OpenAPI 3.1, which the older
`swagger-ui-bundle` 4.x on PyPI does not), needs nothing but FastAPI, and being a Python package
it arrives with the lock file, so neither `scripts/run.sh` nor the image needs Node. Only its
files are used; the pages are FastAPI's, so the settings below stay ours.
"""

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs/assets"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))

# Keep the token across reloads (the docs are for exploring); show how long each call took.
SWAGGER_UI_PARAMETERS = {
    "persistAuthorization": True,
    "displayRequestDuration": True,
    "defaultModelsExpandDepth": 0,
}
# ReDoc's sidebar footer shows Redocly's logo from cdn.redoc.ly, with no option to turn it off:
# the page's policy keeps the browser from fetching it (and anything else not served here).
# Its search runs in a worker made from a blob.
REDOC_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' blob:; style-src 'self' "
    "'unsafe-inline'; img-src 'self' data:; worker-src 'self' blob:; font-src 'self' data:; "
    "frame-ancestors 'none'"
)


def install_docs(app: FastAPI) -> None:
    """/docs (Swagger UI), /docs/oauth2-redirect and /redoc, with their files under /docs/assets.

    The app must be created with docs_url=None and redoc_url=None.
    """
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT_URL}",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = REDOC_CSP
        return page
