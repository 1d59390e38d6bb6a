"""Alembic's environment, run programmatically by `emulator.store.migrate` (no alembic.ini): the
connection to migrate comes in the config's attributes, already inside the store's write transaction."""
from __future__ import annotations

from alembic import context

from emulator.store.migrate import ours
from emulator.store.schema import metadata

connection = context.config.attributes["connection"]
# render_as_batch: SQLite alters tables by copying them, which later migrations need for most changes.
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True, include_name=ours)
with context.begin_transaction():
    context.run_migrations()
