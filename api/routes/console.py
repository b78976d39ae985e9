"""The operator web console: static files under `/console/`, and `/` leading to it.

Everything it loads comes from this app (no CDN: consoles run on networks without the internet),
and its content security policy says so, which also keeps injected markup from running scripts.
The console is a client of the public API like any other: it signs in with `/api/v1/auth/token`
and the API checks every request it makes.
"""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

from core.positioning import CHECK_WORDS

CONSOLE_DIR = Path(__file__).resolve().parents[1] / "console"
CONSOLE_PATH = "/console"
# A module the console imports like its own files, made here from the domain's words so that
# the browser's captions and the annotated JPEG's cannot drift apart.
WORDS_MODULE = f"{CONSOLE_PATH}/js/words.js"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
        "style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # A new release's files are fetched again, not taken from a stale cache.
    "Cache-Control": "no-cache",
}


class ConsoleFiles(StaticFiles):
    """Starlette's static files, answered with the console's security headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


def install(app: FastAPI) -> None:
    """Serve the console at `/console/` and send `/` there."""

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse(f"{CONSOLE_PATH}/")

    words = f"export const CHECK_WORDS = {json.dumps(CHECK_WORDS, indent=2)};\n"

    @app.get(WORDS_MODULE, include_in_schema=False)
    async def words_module() -> Response:  # before the mount, which would answer 404
        return Response(words, media_type="text/javascript", headers=SECURITY_HEADERS)

    app.mount(CONSOLE_PATH, ConsoleFiles(directory=CONSOLE_DIR, html=True), name="console")
