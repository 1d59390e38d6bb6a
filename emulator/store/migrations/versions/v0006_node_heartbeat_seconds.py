"""Each hosting node records its own heartbeat interval, so that nodes started with different
``--job-heartbeat`` values agree on when one of them is dead (emulator.services.hosting).

Rows written before this revision get the default interval, 10 s (a node rewrites its own value on
its next heartbeat).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nodes") as table:
        table.add_column(sa.Column("heartbeat_seconds", sa.Double, nullable=False, server_default=sa.text("10")))


def downgrade() -> None:
    with op.batch_alter_table("nodes") as table:
        table.drop_column("heartbeat_seconds")
