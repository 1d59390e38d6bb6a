"""The schema of the releases before migrations (metadata.sqlite3 as they wrote it).

A data dir of those releases has some of these tables, with no ``alembic_version``: each table (and
each column those releases added at start-up with ALTER TABLE) is created here only where missing,
so that every one of them upgrades in place with its rows kept. Kept as it was written, whatever
`emulator.store.schema` becomes: later changes are later revisions.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Columns older releases lacked and added to existing databases when they started.
_LATER_COLUMNS = {"trial_images": [sa.Column("heatmap_ref", sa.Text)]}


def _text(name: str, nullable: bool = True) -> sa.Column[str]:
    return sa.Column(name, sa.Text, nullable=nullable)


def _time(name: str, nullable: bool = False) -> sa.Column[float]:
    return sa.Column(name, sa.Double, nullable=nullable)


def _project_key() -> sa.Column[str]:
    return sa.Column("project", sa.Text, sa.ForeignKey("projects.name", ondelete="CASCADE"), primary_key=True)


def _tables() -> list[tuple[str, list[Any], dict[str, bool]]]:
    """(name, columns and constraints, options) of each table, parents before children."""
    return [
        ("projects", [sa.Column("name", sa.Text, primary_key=True), _text("arn", False), _time("created_at"),
                      sa.UniqueConstraint("arn")], {}),
        ("client_tokens", [sa.Column("operation", sa.Text, primary_key=True),
                           sa.Column("token", sa.Text, primary_key=True), _text("input_hash", False),
                           _text("response", False), _time("created_at")], {}),
        ("datasets", [_project_key(), sa.Column("dataset_type", sa.Text, primary_key=True), _text("status", False),
                      _text("status_message"), _time("created_at"), _time("updated_at"), _text("manifest"),
                      _text("pending_changes")], {}),
        ("dataset_entries", [sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
                             _text("project", False), _text("dataset_type", False), _text("source_ref", False),
                             _text("line", False), _text("label"), sa.Column("width", sa.Integer, nullable=False),
                             sa.Column("height", sa.Integer, nullable=False), _time("created_at"),
                             sa.UniqueConstraint("project", "dataset_type", "source_ref"),
                             sa.ForeignKeyConstraint(["project", "dataset_type"],
                                                     ["datasets.project", "datasets.dataset_type"],
                                                     ondelete="CASCADE")],
         {"sqlite_autoincrement": True}),
        ("models", [_project_key(), sa.Column("version", sa.Integer, primary_key=True), _text("arn", False),
                    _text("status", False), _text("status_message"), _text("description"), _text("kms_key_id"),
                    _text("output_bucket", False), _text("output_prefix"), _time("created_at"),
                    _text("performance"), _text("evaluation_manifest"), _text("evaluation_result"),
                    _time("evaluation_end", True), sa.Column("min_inference_units", sa.Integer),
                    sa.Column("max_inference_units", sa.Integer), sa.UniqueConstraint("arn")], {}),
        ("model_versions", [_project_key(), sa.Column("last_version", sa.Integer, nullable=False)], {}),
        ("packaging_jobs", [_project_key(), sa.Column("job_name", sa.Text, primary_key=True),
                            sa.Column("model_version", sa.Integer, nullable=False), _text("status", False),
                            _text("status_message"), _text("description"), _text("configuration", False),
                            _text("output_details"), _time("created_at"), _time("updated_at")], {}),
        ("tags", [sa.Column("resource_arn", sa.Text, primary_key=True), sa.Column("key", sa.Text, primary_key=True),
                  _text("value", False)], {}),
        ("console_settings", [sa.Column("name", sa.Text, primary_key=True), _text("value", False)], {}),
        ("console_sessions", [sa.Column("id", sa.Text, primary_key=True), _text("key_id", False),
                              _time("expires_at")], {}),
        ("trial_detections", [_project_key(), sa.Column("name", sa.Text, primary_key=True),
                              sa.Column("model_version", sa.Integer, nullable=False), _text("source", False),
                              _text("status", False), _text("status_message"), _time("created_at")], {}),
        ("trial_images", [sa.Column("project", sa.Text, primary_key=True),
                          sa.Column("trial", sa.Text, primary_key=True),
                          sa.Column("source_ref", sa.Text, primary_key=True), sa.Column("is_anomalous", sa.Integer),
                          sa.Column("confidence", sa.Double), _text("mask_ref"), _text("heatmap_ref"),
                          _text("anomalies"), _text("error"), _text("verified"),
                          sa.Column("added", sa.Integer, nullable=False, server_default=sa.text("0")),
                          sa.ForeignKeyConstraint(["project", "trial"],
                                                  ["trial_detections.project", "trial_detections.name"],
                                                  ondelete="CASCADE")], {}),
    ]


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    existing = set(inspector.get_table_names())
    for name, items, options in _tables():
        if name not in existing:
            op.create_table(name, *items, **options)
    for table, columns in _LATER_COLUMNS.items():
        present = {column["name"] for column in inspector.get_columns(table)}
        for column in columns:
            if column.name not in present:
                op.add_column(table, column)


def downgrade() -> None:
    for name, _, _ in reversed(_tables()):
        op.drop_table(name)
