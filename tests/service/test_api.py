"""The REST API through FastAPI's test client: every endpoint, every error status, JSON errors only."""

from __future__ import annotations

import base64
import hashlib
import io

import pytest
from PIL import Image

from inference.bundles import add_warning_gate, make_bundle
from pneumo.bundle import read_meta

from .conftest import PATIENT_ID, PATIENT_NAME, png_bomb

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def post_image(client, data: bytes, name: str = "image.jpeg", content_type: str = "image/jpeg", **kwargs):
    return client.post("/api/v1/predict", files={"file": (name, data, content_type)}, **kwargs)


def assert_json_error(response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["status"] == status
    message = body["error"]["message"]
    assert isinstance(message, str) and message
    assert "Traceback" not in response.text and 'File "' not in response.text
    return message


# ---- happy paths -------------------------------------------------------------------------------------

def test_health_says_only_alive_and_model_version(client, tiny_bundle):
    assert client.get("/api/v1/health").json() == {"status": "ok", "model_version": read_meta(tiny_bundle)[1].version}


def test_status_reports_auth_database_and_limits(client, tiny_bundle):
    body = client.get("/api/v1/status").json()
    assert body["status"] == "ok"
    assert body["auth"] == "off"
    assert body["database"] == "sqlite"
    assert body["model_version"] == read_meta(tiny_bundle)[1].version
    assert body["max_queued"] == 8 and body["workers"] == 2


def test_the_real_predictor_is_loaded_once_from_the_bundle(client, tiny_bundle):
    from pneumo.inference.predictor import Predictor

    predictor = client.app.state.service.predictor
    assert type(predictor) is Predictor
    assert predictor.meta.version == read_meta(tiny_bundle)[1].version
    client.get("/api/v1/health")
    assert client.app.state.service.predictor is predictor


def test_model_card_summary(client, tiny_bundle):
    _, meta = read_meta(tiny_bundle)
    body = client.get("/api/v1/model").json()
    assert "gate" in body["gate_status"]
    assert body["arch"] == "simple_cnn"
    assert body["version"] == meta.version
    assert body["class_names"] == ["NORMAL", "PNEUMONIA"]
    assert body["threshold"] == pytest.approx(meta.threshold)
    assert body["temperature"] == pytest.approx(meta.temperature)
    for key in ("metrics", "calibration", "gate", "intended_use", "disclaimer"):
        assert key in body
    assert "not a diagnosis" in body["disclaimer"].lower() or "does not make a diagnosis" in body["disclaimer"]


def test_predict_jpeg_returns_result_heatmap_and_history_row(client, xray_jpeg, tiny_bundle):
    response = post_image(client, xray_jpeg)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["label"] in {"NORMAL", "PNEUMONIA"}
    assert 0.0 <= body["probability"] <= 1.0
    assert body["threshold"] == pytest.approx(read_meta(tiny_bundle)[1].threshold)
    assert body["label"] == ("PNEUMONIA" if body["probability"] >= body["threshold"] else "NORMAL")
    assert body["unknown_reason"] is None
    assert body["model_version"] == read_meta(tiny_bundle)[1].version
    assert body["file_type"] == "jpeg"
    assert body["image_sha256"] == hashlib.sha256(xray_jpeg).hexdigest()
    assert body["timing_ms"]["request"] >= body["timing_ms"]["analysis"] > 0
    heatmap = base64.b64decode(body["heatmap"])
    assert heatmap.startswith(PNG_MAGIC)
    assert Image.open(io.BytesIO(heatmap)).size[0] > 0

    row = client.get(f"/api/v1/history/{body['id']}").json()
    assert row["id"] == body["id"]
    assert row["label"] == body["label"]
    assert row["probability"] == pytest.approx(body["probability"])
    assert row["image_sha256"] == body["image_sha256"]
    assert base64.b64decode(row["heatmap"]) == heatmap


def test_predict_png_and_dicom_are_sniffed(client, xray_png, xray_dicom):
    png = post_image(client, xray_png, "scan.png", "image/png")
    assert png.status_code == 200, png.text
    assert png.json()["file_type"] == "png"
    dicom = post_image(client, xray_dicom, "scan.dcm", "application/dicom")
    assert dicom.status_code == 200, dicom.text
    assert dicom.json()["file_type"] == "dicom"
    assert dicom.json()["label"] in {"NORMAL", "PNEUMONIA", "UNKNOWN"}


def test_extension_and_declared_type_are_not_trusted(client, xray_jpeg):
    # A real JPEG sent as text/plain with a .txt name is still a JPEG ...
    response = post_image(client, xray_jpeg, "notes.txt", "text/plain")
    assert response.status_code == 200, response.text
    assert response.json()["file_type"] == "jpeg"
    # ... and text sent as image/png with a .png name is still text.
    assert_json_error(post_image(client, b"just some text, no pixels" * 20, "scan.png", "image/png"), 415)


def test_predict_without_heatmap(client, xray_jpeg):
    body = post_image(client, xray_jpeg, params={"heatmap": "false"}).json()
    assert body["label"] in {"NORMAL", "PNEUMONIA"}
    assert body["heatmap"] is None
    assert client.get(f"/api/v1/history/{body['id']}").json()["has_heatmap"] is False


def test_unknown_has_reason_and_no_heatmap(client):
    blank = io.BytesIO()
    Image.new("L", (64, 64), 128).save(blank, format="PNG")
    response = post_image(client, blank.getvalue(), "blank.png", "image/png")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["label"] == "UNKNOWN"
    assert body["unknown_reason"]
    assert body["probability"] is None
    assert body["heatmap"] is None
    row = client.get(f"/api/v1/history/{body['id']}").json()
    assert row["label"] == "UNKNOWN" and row["heatmap"] is None


def test_history_lists_newest_first_with_pagination(client, xray_jpeg, xray_png):
    ids = [post_image(client, data).json()["id"] for data in (xray_jpeg, xray_png, xray_jpeg)]
    page = client.get("/api/v1/history").json()
    assert page["total"] == 3
    assert [item["id"] for item in page["items"]] == sorted(ids, reverse=True)
    assert all("heatmap" not in item for item in page["items"])  # listings stay small
    assert page["items"][0]["has_heatmap"] is True
    second = client.get("/api/v1/history", params={"limit": 1, "offset": 1}).json()
    assert [item["id"] for item in second["items"]] == [sorted(ids, reverse=True)[1]]
    assert (second["limit"], second["offset"], second["total"]) == (1, 1, 3)


def test_history_stores_no_identifiers(make_client, make_settings, xray_dicom, xray_jpeg, tmp_path):
    client = make_client()
    assert post_image(client, xray_dicom, "Doe_Jane_PID-SECRET-4711.dcm", "application/dicom").status_code == 200
    assert post_image(client, xray_jpeg, "jane-doe-chest.jpeg").status_code == 200
    client.__exit__(None, None, None)  # close the database so every page is in the main file
    stored = b"".join(p.read_bytes() for p in (tmp_path / "data").iterdir() if p.is_file())
    assert stored, "the history database file should exist"
    for secret in (PATIENT_NAME, PATIENT_ID, "Doe_Jane", "jane-doe", "Doe^Jane"):
        assert secret.encode() not in stored, f"{secret!r} leaked into the history database"


def test_history_survives_restart_in_wal_mode(make_client, xray_jpeg):
    first = make_client()
    entry_id = post_image(first, xray_jpeg).json()["id"]
    assert first.app.state.service.history.journal_mode() == "wal"
    first.__exit__(None, None, None)
    second = make_client()
    assert second.get(f"/api/v1/history/{entry_id}").status_code == 200


# ---- errors: 400 -------------------------------------------------------------------------------------

def test_400_truncated_image(client, xray_jpeg):
    message = assert_json_error(post_image(client, xray_jpeg[:300]), 400)
    assert "decoded" in message


@pytest.mark.parametrize("heatmap", ["true", "false"])
def test_decode_errors_map_to_the_same_status_with_or_without_heatmap(client, xray_jpeg, heatmap):
    # explain() raises typed errors, predict() reports a string: both must end as the same status.
    assert_json_error(post_image(client, xray_jpeg[:300], params={"heatmap": heatmap}), 400)
    assert_json_error(post_image(client, png_bomb(), "b.png", "image/png", params={"heatmap": heatmap}), 413)
    assert client.get("/api/v1/history").json()["total"] == 0


def test_400_empty_file(client):
    assert "empty" in assert_json_error(post_image(client, b""), 400)


# ---- errors: 401 -------------------------------------------------------------------------------------

def test_401_when_key_configured(make_client, xray_jpeg):
    client = make_client(api_key="s3cret-key")
    assert set(client.get("/api/v1/health").json()) == {"status", "model_version"}  # open, and quiet
    assert client.get("/api/v1/status", headers={"X-API-Key": "s3cret-key"}).json()["auth"] == "on"
    assert_json_error(client.get("/api/v1/status"), 401)
    assert_json_error(client.get("/api/v1/model"), 401)  # every route but /health checks the caller
    assert client.get("/api/v1/model", headers={"X-API-Key": "s3cret-key"}).status_code == 200
    assert "missing" in assert_json_error(post_image(client, xray_jpeg), 401)
    assert "wrong" in assert_json_error(post_image(client, xray_jpeg, headers={"X-API-Key": "guess"}), 401)
    assert_json_error(client.get("/api/v1/history"), 401)
    assert_json_error(client.get("/api/v1/history/1", headers={"X-API-Key": "nope"}), 401)
    ok = post_image(client, xray_jpeg, headers={"X-API-Key": "s3cret-key"})
    assert ok.status_code == 200
    listing = client.get("/api/v1/history", headers={"X-API-Key": "s3cret-key"})
    assert [item["id"] for item in listing.json()["items"]] == [ok.json()["id"]]


def test_api_key_read_from_environment(monkeypatch, make_settings):
    monkeypatch.setenv("PNEUMO_API_KEY", "from-env")
    from pneumo.service import ServiceSettings

    assert ServiceSettings().api_key == "from-env"


# ---- errors: 413 -------------------------------------------------------------------------------------

def test_413_upload_over_configured_limit(make_client, xray_jpeg):
    client = make_client(max_upload_bytes=2000)
    assert len(xray_jpeg) > 2000
    message = assert_json_error(post_image(client, xray_jpeg), 413)
    assert "2000 bytes" in message
    assert client.get("/api/v1/history").json()["total"] == 0


def test_413_streamed_body_without_content_length(make_client, xray_jpeg):
    client = make_client(max_upload_bytes=2000)
    boundary = "pneumo-test-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.jpeg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode()

    def body():  # a generator: httpx sends it chunked, with no Content-Length to check up front
        yield head
        for start in range(0, len(xray_jpeg), 1000):
            yield xray_jpeg[start:start + 1000]
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post("/api/v1/predict", content=body(),
                           headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert_json_error(response, 413)


def test_413_decompression_bomb(client):
    message = assert_json_error(post_image(client, png_bomb(), "bomb.png", "image/png"), 413)
    assert "pixel" in message


# ---- errors: 415 -------------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [b"%PDF-1.7 not an x-ray at all" * 10, b"GIF89a" + b"\0" * 200, b"\x00" * 300])
def test_415_not_a_supported_image(client, data):
    message = assert_json_error(post_image(client, data, "scan.jpeg", "image/jpeg"), 415)
    assert "JPEG, PNG or DICOM" in message


# ---- errors: 422 -------------------------------------------------------------------------------------

def test_422_missing_file_field(client, xray_jpeg):
    response = client.post("/api/v1/predict", files={"image": ("x.jpeg", xray_jpeg, "image/jpeg")})
    message = assert_json_error(response, 422)
    assert "'file'" in message and "missing" in message


def test_422_no_body_at_all(client):
    assert_json_error(client.post("/api/v1/predict"), 422)


@pytest.mark.parametrize("query", ["limit=0", "limit=1000", "offset=-1", "limit=abc"])
def test_422_bad_history_query(client, query):
    assert_json_error(client.get(f"/api/v1/history?{query}"), 422)


def test_422_bad_history_id(client):
    assert_json_error(client.get("/api/v1/history/abc"), 422)


# ---- errors: 404, 405, 500 ---------------------------------------------------------------------------

def test_404_missing_history_row_and_unknown_route(client):
    assert "12345" in assert_json_error(client.get("/api/v1/history/12345"), 404)
    assert_json_error(client.get("/api/v1/nothing-here"), 404)
    assert_json_error(client.get("/api/v1/predict"), 405)


def test_500_is_json_without_internals(make_client, xray_jpeg, caplog):
    client = make_client(raise_server_exceptions=False)
    predictor = client.app.state.service.predictor

    def broken(source, **options):
        raise RuntimeError("secret internal detail /srv/model.py line 42")

    predictor.explain = broken
    with caplog.at_level("ERROR", logger="pneumo.service"):
        response = post_image(client, xray_jpeg)
    message = assert_json_error(response, 500)
    assert "secret" not in response.text and "model.py" not in response.text
    assert "server log" in message
    assert any("secret internal detail" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


# ---- CORS, headers, OpenAPI ---------------------------------------------------------------------------

def test_cors_closed_by_default(client):
    response = client.get("/api/v1/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers
    preflight = client.options("/api/v1/predict", headers={"Origin": "https://evil.example",
                                                            "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers


def test_cors_open_for_configured_origin(make_client):
    client = make_client(cors_origins=("https://pacs.hospital.example",))
    allowed = client.get("/api/v1/health", headers={"Origin": "https://pacs.hospital.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://pacs.hospital.example"
    other = client.get("/api/v1/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_openapi_and_docs(client):
    schema = client.get("/openapi.json").json()
    for path in ("/api/v1/predict", "/api/v1/health", "/api/v1/status", "/api/v1/model", "/api/v1/history",
                 "/api/v1/history/{entry_id}"):
        assert path in schema["paths"]
    assert "X-API-Key" in str(schema["components"]["securitySchemes"])
    assert client.get("/docs").status_code == 200


def test_service_on_postgresql(make_client, postgres_url, xray_jpeg):
    client = make_client(db_url=postgres_url)
    assert client.get("/api/v1/status").json()["database"] == "postgresql"
    body = post_image(client, xray_jpeg).json()
    row = client.get(f"/api/v1/history/{body['id']}").json()
    assert row["image_sha256"] == body["image_sha256"] and row["heatmap"] == body["heatmap"]
    assert client.get("/api/v1/history").json()["total"] == 1


def test_out_of_distribution_reading_is_answered_with_its_warning_and_kept_in_history(make_client, xray_jpeg,
                                                                                      tmp_path):
    client = make_client(model=str(add_warning_gate(make_bundle(tmp_path / "ood-bundle"))))
    body = post_image(client, xray_jpeg, params={"heatmap": "false"}).json()
    assert body["label"] in {"NORMAL", "PNEUMONIA"} and body["probability"] is not None
    assert body["out_of_distribution"] is True and "unlike the training population" in body["ood_reason"]
    (item,) = client.get("/api/v1/history").json()["items"]
    assert item["result"]["out_of_distribution"] is True and item["result"]["ood_reason"] == body["ood_reason"]
    assert client.get(f"/api/v1/history/{body['id']}").json()["out_of_distribution"] is True


def test_a_reading_within_the_gate_says_it_is_not_out_of_distribution(client, xray_jpeg):
    body = post_image(client, xray_jpeg, params={"heatmap": "false"}).json()
    assert body["label"] in {"NORMAL", "PNEUMONIA"}
    assert body["out_of_distribution"] in (False, None) and body["ood_reason"] is None
