"""The site's figures: the migration that adds reviews and model ids (from 0003, nothing lost, on both engines),
the report on a seeded history (API and CLI, JSON and HTML), and /metrics in Prometheus's text format."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from pneumo.cli import main
from pneumo.service.history import head_revision, migrate, open_history, schema_revision
from pneumo.service.reviews import ReviewStore, UnknownAnalysis

ROW_0003 = {"created": "2026-11-30T10:00:00.000Z", "image_sha256": "a" * 64, "file_type": "dicom",
            "model_version": "m-0.3", "result": '{"label": "PNEUMONIA", "probability": 0.9, "threshold": 0.5}',
            "source": "dicom", "sop_instance_uid": "1.2.3.4"}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_at_0003(request, tmp_path) -> str:
    """The URL of a database at revision 0003 (accounts and audit, no reviews) holding one analysis."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'h.sqlite3'}"
        engine = sa.create_engine(url)
    else:
        url = request.getfixturevalue("postgres_url")  # skips unless a PostgreSQL server is reachable
        engine = sa.create_engine("postgresql+psycopg://" + url.partition("://")[2])
    try:
        migrate(engine, "0003")
        with engine.begin() as connection:
            columns = ", ".join(ROW_0003)
            connection.execute(sa.text(f"INSERT INTO analyses ({columns}) VALUES "
                                       f"({', '.join(':' + c for c in ROW_0003)})"), ROW_0003)
        assert schema_revision(engine) == "0003"
    finally:
        engine.dispose()
    return url


def test_upgrade_from_0003_keeps_rows_and_adds_reviews(database_at_0003):
    history = open_history(database_at_0003)
    try:
        assert schema_revision(history.engine) == head_revision() == "0004"
        (old,) = history.recent(limit=5, offset=0)
        assert (old.model_version, old.model_id, old.model_parent, old.dicom) == (
            "m-0.3", None, None, {"sop_instance_uid": "1.2.3.4"})
        store = ReviewStore(history.engine, history.write_lock)
        store.add(old.id, "NORMAL", reviewer="dr-a", role="clinician", source="api")
        store.add(old.id, "NOT_ASSESSABLE", reviewer="dr-b", role="clinician", source="page", note="rotated")
        assert [r.label for r in store.trail(old.id)] == ["NORMAL", "NOT_ASSESSABLE"]
        assert store.latest()[old.id].reviewer == "dr-b"
        new = history.add(image_sha256="b" * 64, file_type="png", model_version="m-0.4", heatmap_png=None,
                          result={"label": "NORMAL"}, model_id="site@0123456789ab", model_parent="default@ba98")
        assert history.get(new.id).model_parent == "default@ba98"
        with pytest.raises(UnknownAnalysis, match="no analysis with id 10000"):
            store.add(10_000, "NORMAL", reviewer="x", role=None, source="api")
    finally:
        history.close()


def seed(url: str) -> None:
    """12 reviewed pneumonia (9 flagged) and 12 reviewed normal (10 cleared), one UNKNOWN, one warning."""
    history = open_history(url)
    store = ReviewStore(history.engine, history.write_lock)
    try:
        cases = ([("PNEUMONIA", 0.9, "PNEUMONIA")] * 9 + [("NORMAL", 0.2, "PNEUMONIA")] * 3
                 + [("NORMAL", 0.1, "NORMAL")] * 10 + [("PNEUMONIA", 0.7, "NORMAL")] * 2
                 + [("UNKNOWN", None, None), ("NORMAL", 0.3, None)])
        for i, (label, probability, reviewed) in enumerate(cases):
            result = {"label": label, "probability": probability, "threshold": 0.5, "out_of_distribution": i == 0}
            entry = history.add(image_sha256=f"{i:064x}", file_type="png", model_version="v1", heatmap_png=None,
                                result=result, model_id="site@abcdef012345", model_parent="default@0123")
            if reviewed:
                store.add(entry.id, reviewed, reviewer="dr-a", role="clinician", source="import")
    finally:
        history.close()


def test_site_report_on_a_seeded_history(make_client, make_settings, accounts):
    seed(make_settings().database_url)
    client = make_client()
    assert client.get("/api/v1/site/report", headers=accounts["viewer"].bearer).status_code == 403
    response = client.get("/api/v1/site/report", headers=accounts["clinician"].bearer)
    assert response.status_code == 200, response.text
    (section,) = response.json()["models"]
    assert (section["model"], section["model_parent"], section["n"]) == ("site@abcdef012345", "default@0123", 26)
    accuracy = section["accuracy"]
    assert accuracy["sensitivity"]["value"] == pytest.approx(9 / 12)
    assert accuracy["specificity"]["value"] == pytest.approx(10 / 12)
    assert section["agreement"]["n"] == 24 and section["agreement"]["agreement"] == pytest.approx(19 / 24)
    assert section["unknown"]["k"] == 1
    assert response.json()["serving"]["id"].startswith("bundle@")


def test_pneumo_site_report_json_and_html(make_settings, tmp_path, capsys):
    url = make_settings().database_url
    seed(url)
    assert main(["site", "report", "--db", url, "--bootstrap", "50"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["models"][0]["accuracy"]["sensitivity"]["k"] == 9
    out = tmp_path / "report.html"
    assert main(["site", "report", "--db", url, "--format", "html", "--out", str(out), "--bootstrap", "50"]) == 0
    page = out.read_text()
    assert "site@abcdef012345, adapted from default@0123" in page and "0.750 [" in page


def test_metrics_parse_as_prometheus_text(make_client, accounts, xray_png):
    client = make_client()
    answer = client.post("/api/v1/predict", params={"heatmap": "false"}, headers=accounts["clinician"].bearer,
                         files={"file": ("x.png", xray_png, "image/png")}).json()
    disagreeing = "NORMAL" if answer["label"] == "PNEUMONIA" else "PNEUMONIA"
    client.post(f"/api/v1/history/{answer['id']}/review", headers=accounts["clinician"].bearer,
                json={"label": disagreeing})
    assert client.get("/metrics", headers=accounts["clinician"].bearer).status_code == 403
    response = client.get("/metrics", headers=accounts["integration"].bearer)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(response.text) for s in family.samples}
    model = answer["model"]["id"]
    assert samples[("pneumo_predictions_total", (("label", answer["label"]), ("model", model),
                                                 ("source", "upload")))] == 1
    assert samples[("pneumo_reviews_total", (("label", disagreeing), ("source", "api")))] == 1
    if answer["label"] != "UNKNOWN":
        assert samples[("pneumo_review_disagreements_total", (("model", model),))] == 1
    assert samples[("pneumo_prediction_seconds_count", ())] == 1
    assert samples[("pneumo_model_info", (("model", model), ("parent", ""), ("version", answer["model_version"])))] == 1
