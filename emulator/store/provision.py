"""Databases for tests: a fresh PostgreSQL database per test server, made and dropped through a
server's maintenance database (``LOOKOUT_TEST_DATABASE_URL``, e.g. ``.../postgres``)."""
from __future__ import annotations

import re

from sqlalchemy import create_engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from emulator.store.database import StoreError, describe, parse_url

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _run(maintenance_url: str, statement: str) -> None:
    url = parse_url(maintenance_url)
    if url.get_backend_name() != "postgresql":
        raise StoreError(f"{describe(url)} is not a PostgreSQL URL; test databases are made on PostgreSQL")
    engine = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(statement)
    except SQLAlchemyError as exc:
        raise StoreError(f"{describe(url)}: {statement.split(' (')[0]} failed: {exc.__cause__ or exc}") from None
    finally:
        engine.dispose()


def _checked(name: str) -> str:
    if not _NAME.fullmatch(name):  # it goes into the statement as an identifier
        raise ValueError(f"{name!r} is not a plain lower-case database name")
    return name


def create_database(maintenance_url: str, name: str) -> str:
    """Create (afresh: an old one of that name is dropped) database `name` on the server of
    `maintenance_url`; its URL."""
    drop_database(maintenance_url, name)
    _run(maintenance_url, f"CREATE DATABASE {_checked(name)}")
    return database_url(maintenance_url, name)


def database_url(maintenance_url: str, name: str) -> str:
    """The URL of database `name` on the server of `maintenance_url`."""
    return parse_url(maintenance_url).set(database=name).render_as_string(hide_password=False)


def drop_database(maintenance_url: str, name: str) -> None:
    """Drop database `name` if it exists, closing its sessions (PostgreSQL 13+)."""
    _run(maintenance_url, f"DROP DATABASE IF EXISTS {_checked(name)} WITH (FORCE)")
