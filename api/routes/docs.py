"""The interactive API documentation (Swagger UI) at /api/docs, served entirely by this app.

FastAPI's own docs page loads Swagger UI's JavaScript, stylesheet and favicon from a CDN, so on a
site without internet access it is a blank page. The `fastapi-offline` wheel bundles Swagger UI
5.x (which renders the OpenAPI 3.1 document FastAPI emits); its static folder is mounted here and
the page points only at those local copies.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_PATH = "/api/docs"
ASSETS_PATH = f"{DOCS_PATH}/assets"
OAUTH2_REDIRECT_PATH = f"{DOCS_PATH}/oauth2-redirect"
# What the page loads from ASSETS_PATH: the bundled files of fastapi-offline's static folder.
SWAGGER_JS = "swagger-ui-bundle.js"
SWAGGER_CSS = "swagger-ui.css"
FAVICON = "favicon.png"
# Swagger UI would otherwise send the document to validator.swagger.io for a badge.
SWAGGER_PARAMETERS = {"validatorUrl": None}

router = APIRouter()


def assets_directory() -> Path:
    """fastapi-offline's `static/` folder, located through the installed package (not a path
    guessed from site-packages); StaticFiles needs it on the file system, as a wheel installs it."""
    return Path(str(files("fastapi_offline") / "static"))


@router.get(DOCS_PATH, include_in_schema=False)
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI for this API's OpenAPI document, every URL in it local (and under the proxy's
    root path, as FastAPI's own page does), so it renders without internet access."""
    root = request.scope.get("root_path", "").rstrip("/")
    openapi_url = request.app.openapi_url or "/api/openapi.json"
    return get_swagger_ui_html(
        openapi_url=f"{root}{openapi_url}",
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{root}{ASSETS_PATH}/{SWAGGER_JS}",
        swagger_css_url=f"{root}{ASSETS_PATH}/{SWAGGER_CSS}",
        swagger_favicon_url=f"{root}{ASSETS_PATH}/{FAVICON}",
        oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT_PATH}",
        swagger_ui_parameters=SWAGGER_PARAMETERS,
    )


@router.get(OAUTH2_REDIRECT_PATH, include_in_schema=False)
async def swagger_ui_redirect() -> HTMLResponse:
    """The page Swagger UI returns to after an OAuth2 sign-in, as FastAPI's default docs serve."""
    return get_swagger_ui_oauth2_redirect_html()


def install(app: FastAPI) -> None:
    """Mount the bundled assets and add the docs routes (a router cannot carry a mount)."""
    app.mount(ASSETS_PATH, StaticFiles(directory=assets_directory()), name="docs-assets")
    app.include_router(router)
