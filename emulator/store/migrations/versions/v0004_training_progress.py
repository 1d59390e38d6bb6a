"""Training progress in the database, so that every node of a fleet shows where a training is.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "training_progress",
        sa.Column("project", sa.Text, primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("started", sa.Double, nullable=False),
        sa.Column("stage", sa.Text, nullable=False),
        sa.Column("fraction", sa.Double, nullable=False),
        sa.ForeignKeyConstraint(["project", "version"], ["models.project", "models.version"], ondelete="CASCADE"),
    )


def downgrade() -> None:
    op.drop_table("training_progress")
