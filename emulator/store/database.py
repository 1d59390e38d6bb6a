"""The connection side of the store: one SQLAlchemy engine per store, chosen by URL, and the
transactions the repositories run in.

SQLite (the default, ``<data-dir>/metadata.sqlite3``): WAL, a busy timeout, foreign keys on and every
change in a ``BEGIN IMMEDIATE`` transaction (SQLAlchemy's pysqlite recipe: the driver's own
transaction handling is switched off and the transaction emits the BEGIN itself), so a crash loses
no committed change and concurrent waitress threads never interleave half-done writes. Reads outside
a transaction run in autocommit mode and see the last committed state. (The BEGIN is emitted in
`transaction` rather than from a ``begin`` event listener: any connection event makes every query
pay for event dispatch.)

PostgreSQL (psycopg 3): a write transaction first takes one transaction-scoped advisory lock, so
writes serialise across every node exactly as ``BEGIN IMMEDIATE`` serialises them on SQLite: a
check-then-write inside a transaction (the name is free, then insert) holds on both databases. One
lock for the fleet means a node that freezes inside a write transaction (a paused VM, a network
partition, a stopped process) would stop every node's writes until it came back; the server ends any of
our sessions idle in a transaction for `IDLE_IN_TRANSACTION_TIMEOUT_S`, which rolls it back and frees
the lock. Transactions here only run queries, so a live node is never idle in one that long.

Connections are leased, not owned by threads: a thread holds one only while a query or transaction
runs (nested calls on the thread reuse it, so they see the same transaction) and gives it back to the
engine's pool afterwards; jobs run on fresh threads and must not leak one connection each.
"""
from __future__ import annotations

import errno
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, func, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

# Idle connections the pool keeps; more are opened while more threads query at once.
POOL_SIZE = 8
BUSY_TIMEOUT_S = 30
# The advisory lock every PostgreSQL write transaction takes (any constant; "LFV" in ASCII).
WRITE_LOCK_KEY = 0x4C4656
# A frozen node's write transaction ends after this long (module docstring): shorter than a stalled
# job's take-over (three job heartbeats, 30 s by default), so the lock is free by the time another
# node takes the job over.
IDLE_IN_TRANSACTION_TIMEOUT_S = 20
# Repositories report whether a guarded change applied by its row count, which psycopg's INSERTs
# only keep when asked.
_OPTIONS = {"preserve_rowcount": True}


class StoreError(Exception):
    """The metadata database can't be opened or used as it is; the message names it and says why."""


class SchemaBehind(StoreError):
    """The database's schema is older than this release's and must be upgraded (``db upgrade``)."""


class CorruptDatabase(StoreError):
    """The SQLite metadata file is not a database or is damaged: raised on opening it, or by whichever
    query first meets a damaged page, so that callers need no knowledge of SQLite's errors."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"The metadata database {path} is damaged ({problem}). Nothing was changed: restore it "
                         "from a backup, or move it aside to start with no projects (the S3 objects and model "
                         "files under the data dir are kept).")
        self.path = path


# SQLite's primary result codes for a file that is no database or has damaged pages, and a full disk;
# PostgreSQL's SQLSTATE for a full disk.
_SQLITE_CORRUPT, _SQLITE_NOTADB, _SQLITE_FULL = 11, 26, 13
_POSTGRES_DISK_FULL = "53100"


def parse_url(url: str) -> URL:
    """A SQLAlchemy URL of a database we support (SQLite or PostgreSQL through psycopg 3)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"{url!r} is not a database URL; use postgresql+psycopg://user:password@host:5432/name "
                         "or sqlite:///path") from None
    if parsed.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        raise StoreError(f"the database URL {describe(parsed)} names the driver {parsed.drivername}; use "
                         "postgresql+psycopg:// (PostgreSQL 15+ through psycopg 3) or sqlite:///")
    return parsed


def libpq_url(url: str) -> str:
    """The libpq connection string of a PostgreSQL database URL, for libraries that connect through
    psycopg themselves (the job queue, emulator.jobqueue)."""
    return parse_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def describe(url: URL) -> str:
    """The URL for messages and logs: the password left out."""
    return url.render_as_string(hide_password=True)


class Database:
    """An engine and the thread's leased connection."""

    def __init__(self, url: str) -> None:
        self.url = parse_url(url)
        self.where = describe(self.url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite and self.url.database:
            Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        try:
            if self.is_sqlite:
                self.engine = create_engine(self.url, pool_size=POOL_SIZE, max_overflow=-1, execution_options=_OPTIONS,
                                            connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False})
                _configure_sqlite(self.engine)
            else:
                self.engine = create_engine(self.url, pool_size=POOL_SIZE, max_overflow=-1, pool_pre_ping=True,
                                            execution_options=_OPTIONS)
                _configure_postgresql(self.engine)
        except (ArgumentError, NoSuchModuleError) as exc:
            raise StoreError(f"the database URL {self.where} can't be used: {exc}") from None
        self._local = threading.local()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def _held(self) -> Connection | None:
        return getattr(self._local, "conn", None)

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """The thread's connection for the block: the one it holds (inside a transaction), else one
        leased from the pool for this block only."""
        held = self._held()
        if held is not None:
            yield held
            return
        with self._translated_errors(), self.engine.connect() as conn:
            self._local.conn = conn
            try:
                yield conn
            finally:
                self._local.conn = None

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction: commits on success, rolls back on any error. Inside one, a nested
        call joins it."""
        held = self._held()
        if held is not None:
            yield held
            return
        with self.connection() as conn, conn.begin():
            if self.is_sqlite:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.execute(select(func.pg_advisory_xact_lock(WRITE_LOCK_KEY)))
            yield conn

    @contextmanager
    def _translated_errors(self) -> Iterator[None]:
        """The database's errors about its storage rather than the query become what callers handle
        without knowing the driver: CorruptDatabase, and for a full disk the OSError (ENOSPC) every
        other writer under the data dir raises."""
        try:
            yield
        except DBAPIError as exc:
            original = exc.orig
            code = getattr(original, "sqlite_errorcode", -1) & 0xFF  # extended codes keep the primary one low
            if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
                raise CorruptDatabase(str(self.url.database), str(original)) from exc
            if code == _SQLITE_FULL or getattr(original, "sqlstate", None) == _POSTGRES_DISK_FULL:
                raise OSError(errno.ENOSPC, f"{original} (writing {self.where})") from exc
            raise

    def close(self) -> None:
        """Close the pooled connections; those leased now are closed when given back."""
        self.engine.dispose()


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # pysqlite begins nothing itself: `transaction` does
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives process crashes
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()


def _configure_postgresql(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def connect(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET idle_in_transaction_session_timeout = {IDLE_IN_TRANSACTION_TIMEOUT_S * 1000}")
        dbapi_connection.commit()  # the SET began a transaction: the pool hands out idle connections


__all__ = ["CorruptDatabase", "Database", "SQLAlchemyError", "SchemaBehind", "StoreError", "describe", "parse_url"]
