"""Schema migrations (Alembic, run programmatically from the scripts in ``migrations/``).

Embedded SQLite upgrades itself when a server opens it; a PostgreSQL database is upgraded once per
deploy with ``lookout-emulator db upgrade`` and a server on an older schema refuses to start.

A data directory written before migrations existed has tables but no ``alembic_version``: revision
0001 creates only the tables and columns it lacks, so it upgrades in place like a new database.
Migrations run in the store's write transaction, so two nodes upgrading at once take turns.
"""
from __future__ import annotations

import logging

# Alembic logs its plugin set-up when first imported and "Context impl SQLiteImpl" at every start; what
# changed is logged here instead. Set before the imports below, or the server's log starts with the former.
logging.getLogger("alembic").setLevel(logging.WARNING)

from pathlib import Path  # noqa: E402

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402
from alembic.runtime.migration import MigrationContext  # noqa: E402
from alembic.script import ScriptDirectory  # noqa: E402
from sqlalchemy import Connection  # noqa: E402

from emulator.store.database import Database, SchemaBehind, StoreError  # noqa: E402

log = logging.getLogger(__name__)

SCRIPTS = Path(__file__).parent / "migrations"


# The job queue's tables, types and functions on PostgreSQL (revision 0002) are procrastinate's, not
# described in emulator.store.schema: comparisons of the schema with the database leave them out.
QUEUE_PREFIX = "procrastinate_"


def ours(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic's ``include_name`` hook: whether a database object is one `schema` describes."""
    return not (name or "").startswith(QUEUE_PREFIX)


def _config(conn: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    config.attributes["connection"] = conn
    return config


def head() -> str:
    """The revision this release's code needs."""
    return str(ScriptDirectory.from_config(_config()).get_current_head())


def current(conn: Connection) -> str | None:
    """The database's revision (None: no migrations applied, not even the baseline)."""
    return MigrationContext.configure(conn).get_current_revision()


def upgrade(database: Database) -> str:
    """Bring the database to the head revision; the revision it was at ("none" for a new one)."""
    with database.transaction() as conn:
        was = current(conn)
        command.upgrade(_config(conn), "head")
    if was != head():
        log.info("metadata database %s upgraded from revision %s to %s", database.where, was or "none", head())
    return was or "none"


def require_current(database: Database) -> None:
    """Refuse a database whose schema is not this release's (a server never migrates PostgreSQL itself)."""
    with database.connection() as conn:
        was = current(conn)
    needed = head()
    if was == needed:
        return
    if was is not None and was not in {script.revision for script in ScriptDirectory.from_config(_config())
                                       .walk_revisions()}:
        raise StoreError(f"the database {database.where} has schema revision {was}, which this release does not "
                         f"know (it needs {needed}): a newer release wrote it")
    raise SchemaBehind(f"the database {database.where} has schema revision {was or 'none'} but this release "
                       f"needs {needed}; run: lookout-emulator db upgrade --database-url URL")
