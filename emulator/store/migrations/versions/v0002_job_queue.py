"""The durable job queue's tables on PostgreSQL (procrastinate's schema; see emulator.jobqueue).

Applied here so that ``db upgrade`` stays the one command per deploy. SQLite runs jobs in-process
and gets nothing. The schema is the one the installed procrastinate ships: a later procrastinate
release whose schema changes needs a later revision with its migration scripts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""
from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    from procrastinate.schema import SchemaManager

    # Through the driver's own connection (in Alembic's transaction): the schema's ``::jsonb`` casts
    # and ``%`` signs are SQL, not SQLAlchemy or psycopg parameters.
    bind.connection.driver_connection.execute(SchemaManager.get_schema())  # type: ignore[union-attr]


def downgrade() -> None:
    """Drop every table, type and function of procrastinate's (all named ``procrastinate_*``)."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("""
        DO $drop$ DECLARE item record; BEGIN
            FOR item IN SELECT tablename AS name FROM pg_tables
                        WHERE schemaname = current_schema() AND tablename LIKE 'procrastinate%' LOOP
                EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', item.name);
            END LOOP;
            FOR item IN SELECT p.oid::regprocedure AS signature FROM pg_proc p
                        WHERE p.pronamespace = current_schema()::regnamespace AND p.proname LIKE 'procrastinate%' LOOP
                EXECUTE format('DROP FUNCTION IF EXISTS %s CASCADE', item.signature);
            END LOOP;
            FOR item IN SELECT typname AS name FROM pg_type
                        WHERE typnamespace = current_schema()::regnamespace AND typname LIKE 'procrastinate%'
                        AND typtype IN ('e', 'c') LOOP
                EXECUTE format('DROP TYPE IF EXISTS %I CASCADE', item.name);
            END LOOP;
        END $drop$""")
