"""The analyses table of pneumo 0.1.0 (uploads only).

A database written by 0.1.0 already holds exactly this table but no ``alembic_version``: the table is then
left as it is and only the version is recorded, so the later migrations apply to it in place.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("analyses"):
        return
    op.create_table(
        "analyses",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("created", sa.Text, nullable=False),
        sa.Column("image_sha256", sa.Text, nullable=False),
        sa.Column("file_type", sa.Text, nullable=False),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("result", sa.Text, nullable=False),
        sa.Column("heatmap", sa.LargeBinary),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("analyses")
