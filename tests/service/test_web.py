"""The web page: served at /, complete offline (no external URL anywhere), with a strict CSP."""

from __future__ import annotations

import re
from pathlib import Path

import pneumo.service

STATIC = Path(pneumo.service.__file__).parent / "static"
EXTERNAL = re.compile(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", re.IGNORECASE)


def test_index_and_its_assets_are_served(client):
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text):
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert "content-security-policy" in response.headers


def test_no_external_resources_in_any_static_file():
    files = sorted(STATIC.iterdir())
    assert {p.name for p in files} >= {"index.html", "app.css", "app.js"}
    for path in files:
        found = EXTERNAL.findall(path.read_text())
        assert not found, f"{path.name} refers to external resources: {found}"


def test_page_has_disclaimer_characteristics_and_controls(client):
    text = client.get("/").text.lower()
    assert "not a diagnosis" in text
    for topic in ("consolidation", "air bronchograms", "lobar", "interstitial", "pleural effusion"):
        assert topic in text
    for element_id in ("file-input", "drop-zone", "confidence-bar", "threshold-marker", "overlay", "heatmap-toggle",
                       "opacity", "history-list", "unknown-box", "api-key-input"):
        assert f'id="{element_id}"' in text
    assert 'name="viewport"' in text  # phone-width layout


def test_api_docs_pages_work_offline(client):
    assert client.get("/openapi.json").status_code == 200
    page = client.get("/docs")
    assert page.status_code == 200
    assert "cdn." not in page.text and "/docs-assets/swagger-ui-bundle.js" in page.text
    script = client.get("/docs-assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and "SwaggerUIBundle" in script.text
    assert client.get("/docs-assets/swagger-ui.css").status_code == 200
