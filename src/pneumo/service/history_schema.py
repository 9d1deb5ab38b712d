"""The history's schema, written once for every database engine (SQLAlchemy Core).

This is the newest schema, what the code reads and writes. A database on disk reaches it through the
Alembic migrations in :mod:`pneumo.service.migrations`, run on every start (a no-op when it is current).
"""

from __future__ import annotations

import sqlalchemy as sa

# Where a row came from: the web page / REST API, or an instance received by the DICOM node.
SOURCES = ("upload", "dicom")
# The DICOM identifiers kept per row: UIDs and the sender's AE title, never a name or patient id.
DICOM_COLUMNS = ("study_instance_uid", "series_instance_uid", "sop_instance_uid", "sop_class_uid", "calling_ae")

metadata = sa.MetaData()

# BIGINT on PostgreSQL (BIGSERIAL); SQLite's rowid alias must be spelled INTEGER PRIMARY KEY.
_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

analyses = sa.Table(
    "analyses", metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("created", sa.Text, nullable=False),
    sa.Column("image_sha256", sa.Text, nullable=False),
    sa.Column("file_type", sa.Text, nullable=False),
    sa.Column("model_version", sa.Text, nullable=False),
    sa.Column("result", sa.Text, nullable=False),
    sa.Column("heatmap", sa.LargeBinary),
    sa.Column("source", sa.Text, nullable=False, server_default="upload"),
    *(sa.Column(name, sa.Text) for name in DICOM_COLUMNS),
    sa.Index("ix_analyses_study_instance_uid", "study_instance_uid"),
    sa.Index("ix_analyses_sop_instance_uid", "sop_instance_uid"),
    sqlite_autoincrement=True,
)
