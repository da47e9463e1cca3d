"""drift snapshots, the drift window index; on PostgreSQL with pgvector, result vectors

Revision ID: 0003_drift
Revises: 0001
Create Date: 2026-12-05 16:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_drift"
down_revision = "0001"
branch_labels = None
depends_on = None


def _pgvector_available() -> bool:
    """Whether the ``vector`` extension is (or can be) created here: installed on the server and
    the migrating role may create it (tried in a savepoint, so a refusal changes nothing)."""
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    row = bind.execute(
        sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
    ).first()
    if row is None:
        return False
    try:
        with bind.begin_nested():
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
    except sa.exc.DBAPIError:
        return False
    return True


def upgrade() -> None:
    op.create_table(
        "drift_snapshots",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("computed_at", sa.DateTime(), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reference_n", sa.Integer(), nullable=False),
        sa.Column("current_n", sa.Integer(), nullable=False),
        sa.Column("reference_start", sa.DateTime(), nullable=True),
        sa.Column("reference_end", sa.DateTime(), nullable=True),
        sa.Column("current_start", sa.DateTime(), nullable=True),
        sa.Column("current_end", sa.DateTime(), nullable=True),
        sa.Column("classes", sa.JSON(), nullable=True),
        sa.Column("reference_counts", sa.JSON(), nullable=True),
        sa.Column("current_counts", sa.JSON(), nullable=True),
        sa.Column("chi2", sa.Float(), nullable=True),
        sa.Column("class_p", sa.Float(), nullable=True),
        sa.Column("class_p_adjusted", sa.Float(), nullable=True),
        sa.Column("js_distance", sa.Float(), nullable=True),
        sa.Column("psi", sa.Float(), nullable=True),
        sa.Column("embedding_n", sa.Integer(), nullable=False),
        sa.Column("mmd2", sa.Float(), nullable=True),
        sa.Column("mmd_p", sa.Float(), nullable=True),
        sa.Column("mmd_p_adjusted", sa.Float(), nullable=True),
        sa.Column("correction", sa.String(length=8), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drift_snapshots")),
    )
    with op.batch_alter_table("drift_snapshots", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_drift_snapshots_computed_at"), ["computed_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_drift_snapshots_device_id_model_version_computed_at"),
            ["device_id", "model_version", "computed_at"],
            unique=False,
        )
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_results_device_id_model_version_classified_time"),
            ["device_id", "model_version", "classified_time"],
            unique=False,
        )
    if _pgvector_available():
        op.execute(
            "CREATE TABLE result_vectors ("
            " result_id VARCHAR(36) PRIMARY KEY REFERENCES results (result_id) ON DELETE CASCADE,"
            " model_version VARCHAR(64) NOT NULL,"
            " wafer_ref VARCHAR(36) NOT NULL,"
            " dims INTEGER NOT NULL,"
            " ingested_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,"
            " embedding vector NOT NULL)"
        )
        op.execute("CREATE INDEX ix_result_vectors_ingested_at ON result_vectors (ingested_at)")
        op.execute(
            "CREATE INDEX ix_result_vectors_model_version ON result_vectors (model_version, dims)"
        )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS result_vectors")
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_results_device_id_model_version_classified_time"))
    with op.batch_alter_table("drift_snapshots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_drift_snapshots_device_id_model_version_computed_at"))
        batch_op.drop_index(batch_op.f("ix_drift_snapshots_computed_at"))
    op.drop_table("drift_snapshots")
