"""Every hostile input uploaded to the API: 200 with a correct result, or a 4xx JSON error; never a 500,
never a traceback or a server path in the body; a history row for each 200 and none for errors."""

from __future__ import annotations

import mimetypes
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pneumo.data.decode import decode_image, sniff_format
from pneumo.data.errors import ImageDecodeError, ImageTooLargeError, UnsupportedFormatError
from pneumo.service import ServiceSettings, create_app

from pneumo_testsupport.corpus import Case, regular_cases

LABELS = {"NORMAL", "PNEUMONIA", "UNKNOWN"}


@pytest.fixture(scope="module")
def api(session_bundle: Path, tmp_path_factory: pytest.TempPathFactory):
    settings = ServiceSettings(model=str(session_bundle), data_dir=tmp_path_factory.mktemp("api-data"), api_key=None)
    with TestClient(create_app(settings), raise_server_exceptions=False, base_url="http://127.0.0.1") as client:
        yield client


def expected_status(case: Case) -> int:
    """What the API should answer for this file: only JPEG, PNG and DICOM content (sniffed) is accepted."""
    data = case.path.read_bytes()
    if not data:
        return 400
    if sniff_format(data[:256]) not in ("jpeg", "png", "dicom"):
        return 415
    try:
        decode_image(data)
    except ImageTooLargeError:
        return 413
    except UnsupportedFormatError:
        return 415
    except ImageDecodeError:
        return 400
    return 200


REPOSITORY = str(Path(__file__).resolve().parents[2])  # where the code runs from: no body may name it


def body_problem(case: Case, response, corpus_dir: Path) -> str | None:
    text = response.text
    if "Traceback" in text or str(corpus_dir) in text or REPOSITORY in text or "site-packages" in text \
            or 'File "' in text:
        return f"body leaks internals: {text[:300]}"
    try:
        body = response.json()
    except ValueError:
        return f"not JSON: {text[:200]}"
    if response.status_code != 200:
        error = body.get("error") if isinstance(body, dict) else None
        if not (isinstance(error, dict) and error.get("status") == response.status_code and error.get("message")):
            return f"error body is not {{'error': {{'status', 'message'}}}}: {body}"
        return None
    if body.get("label") not in LABELS or not isinstance(body.get("id"), int):
        return f"200 without a label and a history id: {body}"
    if body["label"] == "UNKNOWN":
        return None if body.get("unknown_reason") and body.get("probability") is None else f"bad UNKNOWN: {body}"
    p = body.get("probability")
    return None if isinstance(p, float) and 0.0 <= p <= 1.0 else f"probability {p!r}"


def upload(client: TestClient, case: Case, heatmap: bool):
    content_type = mimetypes.guess_type(case.name)[0] or "application/octet-stream"
    return client.post("/api/v1/predict", params={"heatmap": str(heatmap).lower()},
                       files={"file": (case.name, case.path.read_bytes(), content_type)})


def test_every_upload_gets_a_result_or_a_4xx(api: TestClient, corpus: list[Case], corpus_dir: Path) -> None:
    problems = {}
    accepted = 0
    before = api.get("/api/v1/history", params={"limit": 1}).json()["total"]
    for case in regular_cases(corpus):
        response = upload(api, case, heatmap=False)
        want = expected_status(case)
        if response.status_code != want:
            problems[case.name] = f"status {response.status_code}, expected {want}: {response.text[:200]}"
            continue
        problem = body_problem(case, response, corpus_dir)
        if problem:
            problems[case.name] = problem
        accepted += response.status_code == 200
    assert not problems, "\n".join(f"{name}: {why}" for name, why in problems.items())
    assert accepted >= 20
    total = api.get("/api/v1/history", params={"limit": 1}).json()["total"]
    assert total - before == accepted, "history rows do not match the accepted uploads"


def test_heatmaps_for_the_accepted_inputs(api: TestClient, corpus: list[Case], corpus_dir: Path) -> None:
    """Grad-CAM runs on every accepted file and on the corrupt ones (explain has its own decode path)."""
    chosen = [c for c in regular_cases(corpus) if c.expect == "ok" or c.category.startswith("corrupted")]
    for case in chosen:
        response = upload(api, case, heatmap=True)
        assert response.status_code == expected_status(case), (case.name, response.text[:300])
        assert body_problem(case, response, corpus_dir) is None, case.name
        if response.status_code == 200 and response.json()["label"] != "UNKNOWN":
            assert response.json()["heatmap"], case.name


@pytest.mark.parametrize("path", [
    "/api/v1/history/0", "/api/v1/history/-1", "/api/v1/history/abc", "/api/v1/history/1.5",
    "/api/v1/history/99999999999999999999", "/api/v1/history/9223372036854775808",
    "/api/v1/history?limit=0", "/api/v1/history?limit=100000", "/api/v1/history?offset=-1",
    "/api/v1/history?offset=99999999999999999999", "/api/v1/history?limit=abc", "/api/v1/nothing-here",
    "/api/v1/predict?heatmap=maybe",
])
def test_odd_requests_get_a_4xx_json_error(api: TestClient, path: str) -> None:
    response = api.get(path) if "predict" not in path else api.post(path, files={"file": ("x.png", b"", "image/png")})
    assert 400 <= response.status_code < 500, (path, response.status_code, response.text[:300])
    assert response.json()["error"]["message"]


def test_requests_without_a_file_get_a_4xx(api: TestClient) -> None:
    for kwargs in ({}, {"data": {"file": "not a file"}}, {"content": b"raw bytes", "headers": {"content-type":
                                                                                                "image/png"}},
                   {"files": {"image": ("x.png", b"\x89PNG", "image/png")}}):
        response = api.post("/api/v1/predict", **kwargs)
        assert 400 <= response.status_code < 500, (kwargs, response.status_code, response.text[:300])
        assert response.json()["error"]["message"]
