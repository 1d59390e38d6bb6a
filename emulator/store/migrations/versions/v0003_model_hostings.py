"""Hosting as desired state: the live nodes and the models each one holds (emulator.services.hosting).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("node_id", sa.Text, primary_key=True),
        sa.Column("roles", sa.Text, nullable=False),
        sa.Column("started_at", sa.Double, nullable=False),
        sa.Column("heartbeat_at", sa.Double, nullable=False),
    )
    op.create_table(
        "model_hostings",
        sa.Column("node_id", sa.Text, sa.ForeignKey("nodes.node_id", ondelete="CASCADE"), primary_key=True),
        sa.Column("project", sa.Text, primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("message", sa.Text),
        sa.Column("heartbeat_at", sa.Double, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("model_hostings")
    op.drop_table("nodes")
