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
# Which model answered (revision 0004): its "name@hash" and, for a site bundle, its parent's (pneumo.site.identity).
MODEL_COLUMNS = ("model_id", "model_parent")

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
    *(sa.Column(name, sa.Text) for name in MODEL_COLUMNS),  # NULL on rows written before revision 0004
    sa.Index("ix_analyses_study_instance_uid", "study_instance_uid"),
    sa.Index("ix_analyses_sop_instance_uid", "sop_instance_uid"),
    sqlite_autoincrement=True,
)

# ---- accounts, API tokens, page sessions and the audit trail (revision 0003) --------------------------------
# Who may do what: see pneumo.service.roles. Passwords are argon2 hashes; tokens and session ids are stored as
# SHA-256 digests only, so a copy of the database gives no working credential.
ROLES = ("admin", "clinician", "integration", "viewer")

accounts = sa.Table(
    "accounts", metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("password_hash", sa.Text),  # NULL: no page login (e.g. an integration that only uses tokens)
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created", sa.Text, nullable=False),
    sqlite_autoincrement=True,
)

api_tokens = sa.Table(
    "api_tokens", metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("account_id", _Id, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("token_sha256", sa.Text, nullable=False, unique=True),
    sa.Column("created", sa.Text, nullable=False),
    sa.Column("expires", sa.Text, nullable=False),
    sa.Column("revoked", sa.Text),  # when it was revoked; NULL while valid
    sqlite_autoincrement=True,
)

sessions = sa.Table(
    "sessions", metadata,
    sa.Column("id_sha256", sa.Text, primary_key=True),
    sa.Column("account_id", _Id, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("csrf_token", sa.Text, nullable=False),
    sa.Column("created", sa.Text, nullable=False),
    sa.Column("last_seen", sa.Float, nullable=False),  # Unix time, for the idle timeout
)

# Append-only: the service only ever INSERTs here (pneumo.service.audit); nothing updates or deletes a row.
audit_events = sa.Table(
    "audit_events", metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("created", sa.Text, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),  # account name, or a fixed word for no account
    sa.Column("role", sa.Text),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("analysis_id", _Id),
    sa.Column("address", sa.Text),  # the client's IP address
    sa.Column("outcome", sa.Text, nullable=False),  # ok, denied, failed
    sa.Column("detail", sa.Text),  # a short fixed phrase or a name, never an image, identifier or secret
    sa.Index("ix_audit_events_actor", "actor"),
    sa.Index("ix_audit_events_analysis_id", "analysis_id"),
    sqlite_autoincrement=True,
)

# ---- the reading clinician's conclusion on a result (revision 0004) -----------------------------------------------
# Append-only like the audit trail: a later review of the same analysis supersedes the earlier one (the newest id
# counts), and the earlier rows stay as the trail. NOT_ASSESSABLE: the image cannot be read (it counts in no figure).
REVIEW_LABELS = ("NORMAL", "PNEUMONIA", "PNEUMONIA_BACTERIAL", "PNEUMONIA_VIRAL", "NOT_ASSESSABLE")
REVIEW_SOURCES = ("page", "api", "import")  # the web page, the REST API (a token), `pneumo site import-reviews`

reviews = sa.Table(
    "reviews", metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("analysis_id", _Id, sa.ForeignKey("analyses.id"), nullable=False),
    sa.Column("created", sa.Text, nullable=False),
    sa.Column("reviewer", sa.Text, nullable=False),  # the account name (or the name the RIS export gives)
    sa.Column("role", sa.Text),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("note", sa.Text),  # free text: shown to readers, never logged or put in the audit trail
    sa.Column("source", sa.Text, nullable=False),
    sa.Index("ix_reviews_analysis_id", "analysis_id"),
    sqlite_autoincrement=True,
)
