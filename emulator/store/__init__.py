"""The metadata store: projects, datasets and entries, models, packaging jobs, tags, client tokens,
console settings and trial detections, behind per-resource repositories that return typed records.

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

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from emulator.store import migrate, records
from emulator.store.database import Database, SchemaBehind, StoreError
from emulator.store.repositories import (
    ClientTokens,
    ConsoleSettings,
    Datasets,
    Entries,
    Models,
    PackagingJobs,
    Projects,
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
        self.trials = Trials(database)

    @classmethod
    def open(cls, url: str) -> Store:
        """Open the database at `url`, ready to use: SQLite is created or upgraded in place, PostgreSQL
        must already have this release's schema (`upgrade`). Raises StoreError naming the database."""
        database = Database(url)
        try:
            if database.is_sqlite:
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

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction for the block: every repository call in it (on this thread) commits
        together or not at all, and no other writer runs meanwhile. The connection is for tests that
        arrange rows with `emulator.store.schema`'s tables."""
        with self.database.transaction() as conn:
            yield conn

    def close(self) -> None:
        self.database.close()


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's own words, without SQLAlchemy's statement dump and documentation link."""
    original = getattr(exc, "orig", None)
    return str(original if original is not None else exc).strip().splitlines()[0]


__all__ = ["SchemaBehind", "Store", "StoreError", "records", "sqlite_url"]
