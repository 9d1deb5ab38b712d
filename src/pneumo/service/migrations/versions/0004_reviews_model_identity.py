"""The reading clinician's reviews of results, and which model answered each row (issue 24).

New table ``reviews``; two nullable columns on ``analyses`` (``model_id``, ``model_parent``), NULL on the rows
written before, which keep their ``model_version``.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # ADD COLUMN of a nullable column: no table rebuild on SQLite, no rewrite on PostgreSQL.
    op.add_column("analyses", sa.Column("model_id", sa.Text))
    op.add_column("analyses", sa.Column("model_parent", sa.Text))
    op.create_table(
        "reviews",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("analysis_id", _Id, sa.ForeignKey("analyses.id"), nullable=False),
        sa.Column("created", sa.Text, nullable=False),
        sa.Column("reviewer", sa.Text, nullable=False),
        sa.Column("role", sa.Text),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("source", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_reviews_analysis_id", "reviews", ["analysis_id"])


def downgrade() -> None:
    op.drop_index("ix_reviews_analysis_id", "reviews")
    op.drop_table("reviews")
    with op.batch_alter_table("analyses") as batch:  # SQLite drops a column by rebuilding the table
        batch.drop_column("model_parent")
        batch.drop_column("model_id")
