"""Framing the web page: refused by default, allowed for named origins only (a Hugging Face Space shows the app
inside https://huggingface.co)."""

from __future__ import annotations

import pytest

from pneumo.cli import build_parser
from pneumo.commands.serve import build_settings

SPACE = "https://huggingface.co"


def test_page_refuses_frames_by_default(client):
    response = client.get("/")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_named_origins_may_frame_the_page_and_its_assets(make_client):
    client = make_client(frame_ancestors=(SPACE, "http://127.0.0.1:9000"))
    for path in ("/", "/static/app.js"):
        response = client.get(path)
        assert response.status_code == 200
        assert "X-Frame-Options" not in response.headers
        policy = response.headers["Content-Security-Policy"]
        assert f"frame-ancestors {SPACE} http://127.0.0.1:9000;" in policy and "'none'; form" not in policy
        assert "script-src 'self'" in policy  # the rest of the policy is unchanged
    assert client.get("/api/v1/health").json()["status"] == "ok"


@pytest.mark.parametrize("origin", ["*", "https://huggingface.co/spaces", "huggingface.co",
                                    "https://a.example; script-src *", "https://*.hf.space", ""])
def test_anything_but_an_origin_is_refused(make_settings, origin):
    with pytest.raises(ValueError, match="is not an origin"):
        make_settings(frame_ancestors=(origin,))


def test_serve_flag_is_repeatable(tmp_path):
    args = build_parser().parse_args(["serve", "--data-dir", str(tmp_path), "--frame-ancestor", SPACE,
                                      "--frame-ancestor", "https://example.org:8443"])
    assert build_settings(args).frame_ancestors == (SPACE, "https://example.org:8443")
    assert build_settings(build_parser().parse_args(["serve", "--data-dir", str(tmp_path)])).frame_ancestors == ()
