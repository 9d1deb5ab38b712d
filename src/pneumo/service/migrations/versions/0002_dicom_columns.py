"""DICOM arrivals: where a row came from, and the instance's UIDs (no names, no patient ids).

Existing rows become ``source = 'upload'`` (all 0.1.0 rows were uploads) with NULL UIDs. Only ADD COLUMN and
CREATE INDEX: both engines do these in place, without copying the table.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UID_COLUMNS = ("study_instance_uid", "series_instance_uid", "sop_instance_uid", "sop_class_uid", "calling_ae")


def upgrade() -> None:
    op.add_column("analyses", sa.Column("source", sa.Text, nullable=False, server_default="upload"))
    for name in UID_COLUMNS:
        op.add_column("analyses", sa.Column(name, sa.Text))
    op.create_index("ix_analyses_study_instance_uid", "analyses", ["study_instance_uid"])
    op.create_index("ix_analyses_sop_instance_uid", "analyses", ["sop_instance_uid"])


def downgrade() -> None:
    op.drop_index("ix_analyses_sop_instance_uid", "analyses")
    op.drop_index("ix_analyses_study_instance_uid", "analyses")
    for name in ("source", *UID_COLUMNS):
        op.drop_column("analyses", name)
