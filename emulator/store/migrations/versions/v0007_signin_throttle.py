"""Failed console sign-ins and lockouts in the database, so that the lockout after five failures
holds on every node of a fleet and across restarts (emulator.security.throttle).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signin_failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("failed_at", sa.Double, nullable=False),
    )
    op.create_index("ix_signin_failures_name", "signin_failures", ["name", "failed_at"])
    op.create_index("ix_signin_failures_failed_at", "signin_failures", ["failed_at"])
    op.create_table(
        "signin_lockouts",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("locked_until", sa.Double, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("signin_lockouts")
    op.drop_index("ix_signin_failures_failed_at", "signin_failures")
    op.drop_index("ix_signin_failures_name", "signin_failures")
    op.drop_table("signin_failures")
