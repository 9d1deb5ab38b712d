"""A history written by pneumo 0.1.0 (hand-written DDL, no Alembic) upgrades in place on first open, losing
nothing; a new database starts at the newest schema; both engines end up with the same columns."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa

from pneumo.service.history import head_revision, open_history, schema_revision
from pneumo.service.history_schema import DICOM_COLUMNS

# The schemas and INSERT exactly as pneumo 0.1.0 wrote them (service/history.py, history_postgres.py).
OLD_SQLITE_DDL = ("CREATE TABLE IF NOT EXISTS analyses ("
                  " id INTEGER PRIMARY KEY AUTOINCREMENT,"
                  " created TEXT NOT NULL,"
                  " image_sha256 TEXT NOT NULL,"
                  " file_type TEXT NOT NULL,"
                  " model_version TEXT NOT NULL,"
                  " result TEXT NOT NULL,"
                  " heatmap BLOB)")
OLD_POSTGRES_DDL = ("CREATE TABLE IF NOT EXISTS analyses ("
                    " id BIGSERIAL PRIMARY KEY,"
                    " created TEXT NOT NULL,"
                    " image_sha256 TEXT NOT NULL,"
                    " file_type TEXT NOT NULL,"
                    " model_version TEXT NOT NULL,"
                    " result TEXT NOT NULL,"
                    " heatmap BYTEA)")
OLD_INSERT = ("INSERT INTO analyses (created, image_sha256, file_type, model_version, result, heatmap)"
              " VALUES (?, ?, ?, ?, ?, ?)")
OLD_ROWS = [
    ("2026-11-30T10:00:00.000Z", "a" * 64, "jpeg", "m-0.1", '{"label": "NORMAL", "probability": 0.12, '
     '"threshold": 0.5}', b"\x89PNG one"),
    ("2026-11-30T10:01:00.000Z", "b" * 64, "dicom", "m-0.1", '{"label": "UNKNOWN", "probability": null, '
     '"threshold": 0.5, "unknown_reason": "blank image"}', None),
    ("2026-11-30T10:02:00.000Z", "c" * 64, "png", "m-0.1", '{"label": "PNEUMONIA", "probability": 0.91, '
     '"threshold": 0.5}', b"\x89PNG three"),
]


def _old_sqlite(path) -> None:
    db = sqlite3.connect(path)
    db.execute(OLD_SQLITE_DDL)
    db.executemany(OLD_INSERT, OLD_ROWS)
    db.commit()
    db.close()


def _old_postgres(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute(OLD_POSTGRES_DDL)
        with db.cursor() as cursor:
            cursor.executemany(OLD_INSERT.replace("?", "%s"), OLD_ROWS)


@pytest.fixture(params=["sqlite", "postgresql"])
def old_database(request, tmp_path) -> str:
    """The URL of a database written by pneumo 0.1.0, holding OLD_ROWS."""
    if request.param == "sqlite":
        path = tmp_path / "old.sqlite3"
        _old_sqlite(path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("postgres_url")  # skips unless a PostgreSQL server is reachable
    _old_postgres(url)
    return url


def test_old_database_upgrades_in_place_with_nothing_lost(old_database):
    history = open_history(old_database)
    try:
        assert schema_revision(history.engine) == head_revision()
        assert history.count() == len(OLD_ROWS)
        entries = history.recent(limit=10, offset=0)[::-1]
        for entry, (created, sha, file_type, version, document, heatmap) in zip(entries, OLD_ROWS):
            assert (entry.created, entry.image_sha256, entry.file_type, entry.model_version) == (
                created, sha, file_type, version)
            assert entry.source == "upload" and entry.dicom is None
            assert history.get(entry.id).heatmap_png == heatmap
        assert [e.result["label"] for e in entries] == ["NORMAL", "UNKNOWN", "PNEUMONIA"]
        assert entries[0].summary()["probability"] == pytest.approx(0.12)
        # New rows continue the old ids and carry the new columns.
        added = history.add(image_sha256="d" * 64, file_type="dicom", model_version="m-0.2",
                            result={"label": "NORMAL", "probability": 0.2, "threshold": 0.5}, heatmap_png=None,
                            source="dicom", dicom={"study_instance_uid": "1.2.3", "sop_instance_uid": "1.2.3.4"})
        assert added.id == entries[-1].id + 1
        assert history.get(added.id).dicom == {"study_instance_uid": "1.2.3", "sop_instance_uid": "1.2.3.4"}
        assert history.count(source="upload") == 3 and history.count(source="dicom") == 1
        columns = {c["name"] for c in sa.inspect(history.engine).get_columns("analyses")}
        assert {"source", *DICOM_COLUMNS} <= columns
    finally:
        history.close()
    # A second start is a no-op: same revision, same rows.
    again = open_history(old_database)
    try:
        assert schema_revision(again.engine) == head_revision() and again.count() == 4
    finally:
        again.close()


def test_fresh_databases_have_the_same_columns_on_both_engines(tmp_path, request):
    sqlite = open_history(f"sqlite:///{tmp_path / 'new.sqlite3'}")
    try:
        assert schema_revision(sqlite.engine) == head_revision()
        sqlite_columns = [c["name"] for c in sa.inspect(sqlite.engine).get_columns("analyses")]
    finally:
        sqlite.close()
    assert sqlite_columns[:7] == ["id", "created", "image_sha256", "file_type", "model_version", "result", "heatmap"]
    postgres = open_history(request.getfixturevalue("postgres_url"))
    try:
        postgres_columns = [c["name"] for c in sa.inspect(postgres.engine).get_columns("analyses")]
    finally:
        postgres.close()
    assert postgres_columns == sqlite_columns


def test_unknown_source_or_dicom_field_is_refused(tmp_path):
    history = open_history(f"sqlite:///{tmp_path / 'h.sqlite3'}")
    try:
        with pytest.raises(ValueError, match="unknown history source 'fax'"):
            history.add(image_sha256="0" * 64, file_type="jpeg", model_version="m", result={}, heatmap_png=None,
                        source="fax")
        with pytest.raises(ValueError, match="PatientName"):
            history.add(image_sha256="0" * 64, file_type="dicom", model_version="m", result={}, heatmap_png=None,
                        source="dicom", dicom={"PatientName": "Doe^Jane"})
        assert history.count() == 0
    finally:
        history.close()


@pytest.mark.parametrize("engine_name", ["sqlite", "postgresql"])
def test_the_migrations_build_exactly_the_schema_module(tmp_path, request, engine_name):
    from pneumo.service.history_schema import metadata

    url = (f"sqlite:///{tmp_path / 'new.sqlite3'}" if engine_name == "sqlite"
           else request.getfixturevalue("postgres_url"))
    history = open_history(url)
    try:
        inspector = sa.inspect(history.engine)
        assert set(inspector.get_table_names()) - {"alembic_version"} == set(metadata.tables)
        for table in metadata.sorted_tables:
            assert [c["name"] for c in inspector.get_columns(table.name)] == [c.name for c in table.columns]
            assert ({i["name"] for i in inspector.get_indexes(table.name)} >= {i.name for i in table.indexes})
    finally:
        history.close()
