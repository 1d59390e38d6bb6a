"""The models trial detections started, in the database rather than one server's memory, so that in
a fleet the last trial on any node stops the model and a trial never stops a model a user hosted
(emulator.console.trial_runs).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trial_hostings",
        sa.Column("project", sa.Text, primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.ForeignKeyConstraint(["project", "version"], ["models.project", "models.version"], ondelete="CASCADE"),
    )


def downgrade() -> None:
    op.drop_table("trial_hostings")
