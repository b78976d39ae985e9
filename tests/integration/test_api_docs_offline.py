"""/api/docs works without internet access: the page and everything it loads come from the API."""

from __future__ import annotations

import re
from urllib.parse import urljoin

import httpx
import pytest

from tests.integration.api_server import ApiServer

pytestmark = pytest.mark.integration

# Every place the page names something to load: <link href>, <script src>, and the JS `url:`.
_REFERENCES = re.compile(r"""(?:href|src)="([^"]+)"|url:\s*'([^']+)'""")


def _references(html: str) -> list[str]:
    return [href or url for href, url in _REFERENCES.findall(html)]


def test_docs_page_names_no_external_url(api: ApiServer) -> None:
    page = httpx.get(f"{api.url}/api/docs", timeout=30)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "http://" not in page.text
    assert "https://" not in page.text
    assert "//cdn" not in page.text
    references = _references(page.text)
    assert references, page.text
    assert all(ref.startswith("/") and not ref.startswith("//") for ref in references), references


def test_docs_assets_are_served_by_the_api(api: ApiServer) -> None:
    page = httpx.get(f"{api.url}/api/docs", timeout=30).text
    references = _references(page)
    expected = {
        ".js": ("text/javascript", 500_000),
        ".css": ("text/css", 50_000),
        ".png": ("image/png", 500),
    }
    for suffix, (content_type, min_size) in expected.items():
        (path,) = [ref for ref in references if ref.endswith(suffix)]
        reply = httpx.get(urljoin(api.url, path), timeout=30)
        assert reply.status_code == 200, path
        assert reply.headers["content-type"].startswith(content_type), path
        assert len(reply.content) > min_size, path
    # The document the page renders is served too, as OpenAPI 3.1 (which Swagger UI 5 renders).
    (openapi,) = [ref for ref in references if ref.endswith(".json")]
    document = httpx.get(urljoin(api.url, openapi), timeout=30)
    assert document.status_code == 200
    assert document.json()["openapi"].startswith("3.1")


def test_docs_bundle_is_swagger_ui_5(api: ApiServer) -> None:
    """Swagger UI 4 shows "Unable to render this definition" for an OpenAPI 3.1 document."""
    bundle = httpx.get(f"{api.url}/api/docs/assets/swagger-ui-bundle.js", timeout=30).text
    assert re.search(r'PACKAGE_VERSION:"5\.\d+\.\d+"', bundle)
