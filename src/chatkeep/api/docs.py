"""The API docs at ``/docs``: Swagger UI, served from the installed packages, so the page works with no internet.

FastAPI's default ``/docs`` loads Swagger UI's script, stylesheet and icon from a CDN (a blank page offline, and a
third party told of every visit), and ``/redoc`` does the same with ReDoc and Google Fonts. chatkeep turns both off
and serves Swagger UI itself, the way FastAPI documents it (``get_swagger_ui_html`` with local asset URLs). The
assets come from the ``fastapi-offline`` package, which ships a current Swagger UI bundle (the ``swagger-ui-bundle``
package still ships Swagger UI 4, which cannot render OpenAPI 3.1, FastAPI's version); only its files are used.

The page carries a Content-Security-Policy of its own: scripts from this origin plus the one inline script that
starts Swagger UI, allowed by its hash; no request leaves the origin (``validatorUrl`` off: Swagger UI would ask
validator.swagger.io about the schema).
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS_PATH", "DOCS_PATH", "mount_docs"]

DOCS_PATH = "/docs"
#: Where Swagger UI's files are served (``swagger-ui-bundle.js``, ``swagger-ui.css``, ``favicon.png``).
ASSETS_PATH = "/docs/assets"

_ASSETS = Path(str(files("fastapi_offline") / "static"))
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def mount_docs(app: FastAPI) -> None:
    """Serve Swagger UI for ``app``'s OpenAPI document at ``/docs``, its assets under ``/docs/assets``."""
    openapi_url = app.openapi_url
    if openapi_url is None:
        return
    app.mount(ASSETS_PATH, StaticFiles(directory=_ASSETS), name="docs-assets")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs(request: Request) -> Response:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        page = get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} API",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None},
        )
        hashes = " ".join(_sha256_source(script) for script in _INLINE_SCRIPT.findall(page.body))
        page.headers["content-security-policy"] = (
            f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'"
        )
        return page


def _sha256_source(script: bytes) -> str:
    """A CSP source allowing exactly this inline script."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
