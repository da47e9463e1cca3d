"""releases and rollouts

Revision ID: 0006_releases_rollouts
Revises: 0005_federation
Create Date: 2026-12-05 16:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_releases_rollouts"
down_revision = "0005_federation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "releases",
        sa.Column("release_id", sa.String(length=36), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("blob", sa.String(length=120), nullable=False),
        sa.Column("content_digest", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("manifest", sa.JSON(), nullable=True),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("registered_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("release_id", name=op.f("pk_releases")),
        sa.UniqueConstraint("channel", "version", name=op.f("uq_releases_channel_version")),
    )
    # the placeholder rollouts table of 0001 (never written) gives way to release rollouts
    with op.batch_alter_table("rollouts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rollouts_model_version"))
    op.drop_table("rollouts")
    op.create_table(
        "rollouts",
        sa.Column("rollout_id", sa.String(length=36), nullable=False),
        sa.Column("release_id", sa.String(length=36), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("waves", sa.JSON(), nullable=False),
        sa.Column("gates", sa.JSON(), nullable=False),
        sa.Column("wave_results", sa.JSON(), nullable=True),
        sa.Column("group", sa.JSON(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("wave_started_at", sa.DateTime(), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["release_id"], ["releases.release_id"], name=op.f("fk_rollouts_release_id_releases")
        ),
        sa.PrimaryKeyConstraint("rollout_id", name=op.f("pk_rollouts")),
    )
    with op.batch_alter_table("rollouts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rollouts_release_id"), ["release_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_rollouts_state"), ["state"], unique=False)
    op.create_table(
        "rollout_devices",
        sa.Column("rollout_id", sa.String(length=36), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("command_id", sa.String(length=36), nullable=True),
        sa.Column("rollback_command_id", sa.String(length=36), nullable=True),
        sa.Column("previous_model_version", sa.String(length=64), nullable=True),
        sa.Column("active_model_version", sa.String(length=64), nullable=True),
        sa.Column("last_ack", sa.String(length=32), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=True),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["rollout_id"],
            ["rollouts.rollout_id"],
            name=op.f("fk_rollout_devices_rollout_id_rollouts"),
        ),
        sa.PrimaryKeyConstraint("rollout_id", "device_id", name=op.f("pk_rollout_devices")),
        sa.UniqueConstraint("command_id", name=op.f("uq_rollout_devices_command_id")),
        sa.UniqueConstraint(
            "rollback_command_id", name=op.f("uq_rollout_devices_rollback_command_id")
        ),
    )


def downgrade() -> None:
    op.drop_table("rollout_devices")
    op.drop_table("rollouts")
    op.create_table(
        "rollouts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("stage_percent", sa.Integer(), nullable=False),
        sa.Column("cohort", sa.JSON(), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_version"],
            ["models.model_version"],
            name=op.f("fk_rollouts_model_version_models"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollouts")),
    )
    with op.batch_alter_table("rollouts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_rollouts_model_version"), ["model_version"], unique=False
        )
    op.drop_table("releases")
