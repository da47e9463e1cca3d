"""federation: label_dispatch (reviewers' labels on their way back to the edges)

Revision ID: 0005_federation
Revises: 0004_training_jobs
Create Date: 2026-12-05 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_federation"
down_revision = "0004_training_jobs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "label_dispatch",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("label_id", sa.String(length=36), nullable=False),
        sa.Column("result_id", sa.String(length=36), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_label_dispatch")),
        sa.UniqueConstraint("label_id", name=op.f("uq_label_dispatch_label_id")),
    )
    with op.batch_alter_table("label_dispatch", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_label_dispatch_device_id_created_at"),
            ["device_id", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_label_dispatch_sent_at_id"), ["sent_at", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("label_dispatch", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_label_dispatch_sent_at_id"))
        batch_op.drop_index(batch_op.f("ix_label_dispatch_device_id_created_at"))
    op.drop_table("label_dispatch")
