"""The metadata store: projects, datasets and entries, models, packaging jobs, tags, client tokens,
console settings, sessions and failed sign-ins, trial detections and which node hosts which model,
behind per-resource repositories that return typed records.

    store = Store.open("sqlite:///data/metadata.sqlite3")    # or postgresql+psycopg://...
    with store.transaction():                                 # one write transaction, if needed
        project = store.projects.get("cookies")

One implementation, SQLAlchemy Core, on SQLite (the embedded default) or PostgreSQL 15+ (psycopg 3);
`database` says how connections and transactions work, `migrate` how the schema is kept current.
No SQL is written outside this package.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, inspect, select
from sqlalchemy.exc import SQLAlchemyError

from emulator.store import migrate, records, schema
from emulator.store.database import CorruptDatabase, Database, SchemaBehind, StoreError
from emulator.store.repositories import (
    ClientTokens,
    ConsoleSessions,
    ConsoleSettings,
    Datasets,
    Entries,
    Hostings,
    Models,
    PackagingJobs,
    Projects,
    SignInAttempts,
    Tags,
    Trials,
)


def sqlite_url(path: Path) -> str:
    """The URL of the embedded database file."""
    return f"sqlite:///{path}"


class Store:
    """The repositories of one metadata database."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.where = database.where
        self.projects = Projects(database)
        self.datasets = Datasets(database)
        self.entries = Entries(database)
        self.models = Models(database)
        self.packaging_jobs = PackagingJobs(database)
        self.tags = Tags(database)
        self.client_tokens = ClientTokens(database)
        self.console_settings = ConsoleSettings(database)
        self.console_sessions = ConsoleSessions(database)
        self.signin_attempts = SignInAttempts(database)
        self.trials = Trials(database)
        self.hostings = Hostings(database)

    @classmethod
    def open(cls, url: str) -> Store:
        """Open the database at `url`, ready to use: SQLite is created or upgraded in place, PostgreSQL
        must already have this release's schema (`upgrade`). Raises StoreError naming the database."""
        database = Database(url)
        try:
            if database.is_sqlite:
                _check_pages(database)
                migrate.upgrade(database)
            else:
                migrate.require_current(database)
        except StoreError:
            database.close()
            raise
        except SQLAlchemyError as exc:
            database.close()
            raise StoreError(f"the metadata database {database.where} can't be opened: {_reason(exc)}") from None
        return cls(database)

    @staticmethod
    def upgrade(url: str) -> str:
        """Apply the migrations this release has to the database at `url` (``db upgrade``); the
        revision it was at. Raises StoreError naming the database."""
        database = Database(url)
        try:
            return migrate.upgrade(database)
        except SQLAlchemyError as exc:
            raise StoreError(f"the metadata database {database.where} can't be upgraded: {_reason(exc)}") from None
        finally:
            database.close()

    def ping(self) -> str | None:
        """Why the database does not answer now, or None when it does (readiness probes)."""
        try:
            with self.database.connection() as conn:
                conn.execute(select(1)).scalar_one()
        except (SQLAlchemyError, StoreError, OSError) as exc:
            return f"the database does not answer ({_reason(exc)})"
        return None

    def schema_problem(self) -> str | None:
        """How the database's schema differs from this release's, or None when it is current
        (readiness probes: another node may have migrated it since this one started, or someone
        changed it by hand): its revision, then each table and column the code uses."""
        try:
            migrate.require_current(self.database)
            with self.database.connection() as conn:
                inspector = inspect(conn)
                present = set(inspector.get_table_names())
                for table in schema.metadata.sorted_tables:
                    if table.name not in present:
                        return f"the schema is not current: table {table.name} is missing"
                    missing = sorted(set(table.c.keys()) - {c["name"] for c in inspector.get_columns(table.name)})
                    if missing:
                        return f"the schema is not current: table {table.name} lacks {', '.join(missing)}"
        except StoreError as behind:
            return f"the schema is not current: {behind}"
        except (SQLAlchemyError, OSError) as exc:
            return f"the schema could not be read ({_reason(exc)})"
        return None

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction for the block: every repository call in it (on this thread) commits
        together or not at all, and no other writer runs meanwhile. The connection is for tests that
        arrange rows with `emulator.store.schema`'s tables."""
        with self.database.transaction() as conn:
            yield conn

    def close(self) -> None:
        self.database.close()


def _check_pages(database: Database) -> None:
    """Refuse a damaged SQLite file at start (CorruptDatabase), not halfway through recovery."""
    with database.connection() as conn:
        problems = [str(row[0]) for row in conn.exec_driver_sql("PRAGMA quick_check(3)")]
    if problems != ["ok"]:
        raise CorruptDatabase(str(database.url.database), "; ".join(problems))


def _reason(exc: BaseException) -> str:
    """The driver's own words, without SQLAlchemy's statement dump and documentation link."""
    original = getattr(exc, "orig", None)
    return str(original if original is not None else exc).strip().splitlines()[0]


__all__ = ["CorruptDatabase", "SchemaBehind", "Store", "StoreError", "records", "sqlite_url"]
