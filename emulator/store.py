"""SQLite metadata store.

One database file under the data dir, WAL mode, and every change in an explicit ``BEGIN IMMEDIATE``
transaction: a crash (even ``kill -9``) loses no committed change and concurrent waitress threads
never interleave half-done writes.

Connections are leased, not owned by threads: a thread holds one only while a query or transaction
runs (nested calls on the thread reuse it) and gives it back to a small pool afterwards. Every job
runs on a fresh thread, so connections tied to threads leaked two file descriptors per job until
the process ran out of them.
"""
from __future__ import annotations

import errno
import functools
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Each resource's table. Columns hold what the API reports; JSON text columns hold nested data.
SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    name        TEXT PRIMARY KEY,
    arn         TEXT NOT NULL UNIQUE,
    created_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS client_tokens (
    operation   TEXT NOT NULL,
    token       TEXT NOT NULL,
    input_hash  TEXT NOT NULL,
    response    TEXT NOT NULL,
    created_at  REAL NOT NULL,
    PRIMARY KEY (operation, token)
);
CREATE TABLE IF NOT EXISTS datasets (
    project        TEXT NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
    dataset_type   TEXT NOT NULL,
    status         TEXT NOT NULL,
    status_message TEXT,
    created_at     REAL NOT NULL,
    updated_at     REAL NOT NULL,
    manifest       TEXT,                  -- JSON S3Object the dataset was created from (NULL: empty)
    pending_changes TEXT,                 -- JSON [[line number, JSON line], ...] of a running update
    PRIMARY KEY (project, dataset_type)
);
CREATE TABLE IF NOT EXISTS dataset_entries (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    project       TEXT NOT NULL,
    dataset_type  TEXT NOT NULL,
    source_ref    TEXT NOT NULL,
    line          TEXT NOT NULL,          -- the JSON line as stored (ListDatasetEntries returns it)
    label         TEXT,                   -- 'normal' / 'anomaly' / NULL (unlabelled)
    width         INTEGER NOT NULL,       -- image dimensions: all images of a project must match
    height        INTEGER NOT NULL,
    created_at    REAL NOT NULL,
    UNIQUE (project, dataset_type, source_ref),
    FOREIGN KEY (project, dataset_type) REFERENCES datasets(project, dataset_type) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS models (
    project             TEXT NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
    version             INTEGER NOT NULL,
    arn                 TEXT NOT NULL UNIQUE,
    status              TEXT NOT NULL,
    status_message      TEXT,
    description         TEXT,
    kms_key_id          TEXT,
    output_bucket       TEXT NOT NULL,
    output_prefix       TEXT,
    created_at          REAL NOT NULL,
    performance         TEXT,             -- JSON {F1Score, Recall, Precision}
    evaluation_manifest TEXT,             -- JSON {Bucket, Key}
    evaluation_result   TEXT,             -- JSON {Bucket, Key}
    evaluation_end      REAL,
    min_inference_units INTEGER,
    max_inference_units INTEGER,
    PRIMARY KEY (project, version)
);
-- Last model version handed out per project: versions are never reused after a DeleteModel.
CREATE TABLE IF NOT EXISTS model_versions (
    project      TEXT PRIMARY KEY REFERENCES projects(name) ON DELETE CASCADE,
    last_version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS packaging_jobs (
    project        TEXT NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
    job_name       TEXT NOT NULL,
    model_version  INTEGER NOT NULL,
    status         TEXT NOT NULL,
    status_message TEXT,
    description    TEXT,
    configuration  TEXT NOT NULL,         -- JSON ModelPackagingConfiguration as given
    output_details TEXT,                  -- JSON ModelPackagingOutputDetails
    created_at     REAL NOT NULL,
    updated_at     REAL NOT NULL,
    PRIMARY KEY (project, job_name)
);
CREATE TABLE IF NOT EXISTS tags (
    resource_arn TEXT NOT NULL,
    key          TEXT NOT NULL,
    value        TEXT NOT NULL,
    PRIMARY KEY (resource_arn, key)
);
CREATE TABLE IF NOT EXISTS console_settings (  -- web console state that is not an API resource
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS console_sessions (  -- console sign-ins not signed out (emulator.console.signin)
    id          TEXT PRIMARY KEY,         -- the random id the signed session cookie carries
    key_id      TEXT NOT NULL,
    expires_at  REAL NOT NULL             -- seconds since the epoch, as the cookie's own expiry
);
CREATE TABLE IF NOT EXISTS trial_detections (  -- web console trial detection tasks, kept until the project goes
    project        TEXT NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    model_version  INTEGER NOT NULL,
    source         TEXT NOT NULL,         -- 'upload' or the s3:// prefix the images came from
    status         TEXT NOT NULL,         -- IN_PROGRESS / COMPLETED / FAILED
    status_message TEXT,
    created_at     REAL NOT NULL,
    PRIMARY KEY (project, name)
);
CREATE TABLE IF NOT EXISTS trial_images (
    project      TEXT NOT NULL,
    trial        TEXT NOT NULL,
    source_ref   TEXT NOT NULL,           -- s3:// URI of the image
    is_anomalous INTEGER,                 -- the prediction (NULL until detected)
    confidence   REAL,
    mask_ref     TEXT,                    -- s3:// URI of the predicted anomaly mask (segmentation models)
    heatmap_ref  TEXT,                    -- s3:// URI of the anomaly map as a greyscale PNG (every model)
    anomalies    TEXT,                    -- JSON Anomalies of a segmentation prediction
    error        TEXT,                    -- why detection failed on this image
    verified     TEXT,                    -- label the user confirmed: 'normal' / 'anomaly' / NULL
    added        INTEGER NOT NULL DEFAULT 0,  -- 1 once copied into the training dataset
    PRIMARY KEY (project, trial, source_ref),
    FOREIGN KEY (project, trial) REFERENCES trial_detections(project, name) ON DELETE CASCADE
);
"""


@functools.cache
def _expected_columns() -> dict[str, frozenset[str]]:
    """Each table SCHEMA creates, with its columns (read from SCHEMA applied to an empty database)."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(SCHEMA)
        tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND "
                                                   "name NOT LIKE 'sqlite_%'")]
        return {table: frozenset(row[1] for row in conn.execute(f"PRAGMA table_info({table})")) for table in tables}
    finally:
        conn.close()
class CorruptDatabase(Exception):
    """The metadata database is not a SQLite database or is damaged. Raised by the store itself (on
    opening it, or by whichever query first meets a damaged page) so that callers need no knowledge of
    SQLite's errors: the CLI turns it into one line telling the operator what to do."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"The metadata database {path} is damaged ({problem}). Nothing was changed: restore it "
                         "from a backup, or move it aside to start with no projects (the S3 objects and model "
                         "files under the data dir are kept).")
        self.path = path


# SQLite's primary result codes for a file that is no database, or whose pages are damaged.
_SQLITE_CORRUPT, _SQLITE_NOTADB, _SQLITE_FULL = 11, 26, 13


# Idle connections kept for reuse; more are opened while more threads query at once, and closed
# when they come back to a full pool.
MAX_IDLE_CONNECTIONS = 8


class Store:
    """Thread-safe access to the metadata database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()  # the connection this thread has leased, and how deeply
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._apply(SCHEMA)
        with self._connection() as conn:  # damaged pages fail here, not halfway through recovery
            problems = [row[0] for row in conn.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            raise CorruptDatabase(path, "; ".join(problems))

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives process crashes
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """Lease a connection for the block: this thread's current one if it holds one (so nested
        calls see the same transaction), else one from the pool, returned when the block ends."""
        held: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if held is not None:
            yield held
            return
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        try:
            conn = conn or self._open()
            self._local.conn = conn
            try:
                yield conn
            finally:
                self._local.conn = None
                self._give_back(conn)
        except sqlite3.DatabaseError as exc:
            # SQLite's errors about the file rather than the query become what callers handle without
            # knowing SQLite: CorruptDatabase, and a full disk the OSError (ENOSPC) that every other
            # writer under the data dir raises for it. Extended codes keep the primary one in the low byte.
            code = exc.sqlite_errorcode & 0xFF
            if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
                raise CorruptDatabase(self.path, str(exc)) from exc
            if code == _SQLITE_FULL:
                raise OSError(errno.ENOSPC, f"{exc} (writing {self.path})") from exc
            raise

    def _give_back(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:  # never hand on a connection with a transaction left open
            conn.execute("ROLLBACK")
        with self._lock:
            if not self._closed and len(self._idle) < MAX_IDLE_CONNECTIONS:
                self._idle.append(conn)
                return
        conn.close()

    def _apply(self, ddl: str) -> None:
        with self._connection() as conn:
            conn.executescript(ddl)

    def add_column(self, table: str, column: str, declaration: str) -> None:
        """Add a column that SCHEMA gained later to a database created before (idempotent)."""
        with self.transaction() as db:
            if column not in {row["name"] for row in db.execute(f"PRAGMA table_info({table})")}:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An immediate (write-locked) transaction; commits on success, rolls back on any error."""
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")

    def query(self, sql: str, args: tuple[Any, ...] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        """Read outside a write transaction (WAL readers see the last committed state)."""
        with self._connection() as conn:
            return conn.execute(sql, args).fetchall()

    def query_one(self, sql: str, args: tuple[Any, ...] | dict[str, Any] = ()) -> sqlite3.Row | None:
        with self._connection() as conn:
            rows = conn.execute(sql, args).fetchmany(1)
        return rows[0] if rows else None

    def ping(self) -> str | None:
        """Why the database does not answer now, or None when it does (readiness probes,
        `emulator.ops.probes`)."""
        try:
            with self._connection() as conn:
                conn.execute("SELECT 1").fetchone()
        except (sqlite3.Error, CorruptDatabase, OSError) as exc:
            return f"the database does not answer ({exc})"
        return None

    def schema_problem(self) -> str | None:
        """How the database's schema differs from the one this release uses (a table or column of
        SCHEMA missing), or None when it is current (readiness probes)."""
        try:
            with self._connection() as conn:
                present = {table: {row["name"] for row in conn.execute(f"PRAGMA table_info({table})")}
                           for table in _expected_columns()}
        except (sqlite3.Error, CorruptDatabase, OSError) as exc:
            return f"the schema could not be read ({exc})"
        for table, columns in _expected_columns().items():
            if not present[table]:
                return f"the schema is not current: table {table} is missing"
            missing = sorted(columns - present[table])
            if missing:
                return f"the schema is not current: table {table} lacks {', '.join(missing)}"
        return None

    def close(self) -> None:
        """Close the pooled connections; those leased now are closed when given back."""
        with self._lock:
            self._closed = True
            connections, self._idle = self._idle, []
        for conn in connections:
            conn.close()

    # -- console sign-in sessions: kept here, not in the cookie, so that signing out holds on
    # every server sharing this database and across restarts.

    def add_console_session(self, session_id: str, key_id: str, expires_at: float, now: float) -> None:
        """Record a sign-in, forgetting sessions that have expired by `now`."""
        with self.transaction() as db:
            db.execute("DELETE FROM console_sessions WHERE expires_at <= ?", (now,))
            db.execute("INSERT INTO console_sessions(id, key_id, expires_at) VALUES (?, ?, ?)",
                       (session_id, key_id, expires_at))

    def console_session_is_live(self, session_id: str, key_id: str, now: float) -> bool:
        """Whether this key's sign-in has neither been signed out nor expired."""
        return self.query_one("SELECT 1 FROM console_sessions WHERE id = ? AND key_id = ? AND expires_at > ?",
                              (session_id, key_id, now)) is not None

    def end_console_session(self, session_id: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM console_sessions WHERE id = ?", (session_id,))
