"""An index of dataset entries by project, label and source-ref, for the console's project list.

The list shows one picture per project (an anomaly where there is one); with this index
``Entries.picture`` finds it in a few index seeks instead of reading every entry of the project.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""
from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_dataset_entries_picture", "dataset_entries", ["project", "label", "source_ref"])


def downgrade() -> None:
    op.drop_index("ix_dataset_entries_picture", table_name="dataset_entries")
