"""The metadata store on both databases: SQLite always, PostgreSQL when LOOKOUT_TEST_DATABASE_URL
names a server's maintenance database (else those cases are skipped, saying why)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.schema import DropTable

from emulator.store import CorruptDatabase, SchemaBehind, Store, StoreError, schema, sqlite_url
from emulator.store.migrate import head
from emulator.store.provision import create_database, drop_database
from emulator.store.records import Model
from emulator.testing.local import TEST_DATABASE_VARIABLE

MAINTENANCE_URL = os.environ.get(TEST_DATABASE_VARIABLE)
needs_postgres = pytest.mark.skipif(not MAINTENANCE_URL, reason=f"{TEST_DATABASE_VARIABLE} is not set: no PostgreSQL "
                                    "server to test on")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (no schema yet)."""
    assert MAINTENANCE_URL
    name = f"lookout_test_{uuid.uuid4().hex[:16]}"
    yield create_database(MAINTENANCE_URL, name)
    drop_database(MAINTENANCE_URL, name)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=needs_postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        opened = Store.open(sqlite_url(tmp_path / "metadata.sqlite3"))
    else:
        url = request.getfixturevalue("postgres_url")
        Store.upgrade(url)
        opened = Store.open(url)
    yield opened
    opened.close()


def _model(project: str, version: int, status: str = "TRAINING") -> Model:
    return Model(project=project, version=version, arn=f"arn:model/{project}/{version}", status=status,
                 status_message=None, description=None, kms_key_id=None, output_bucket="bucket", output_prefix=None,
                 created_at=1.0, performance=None, evaluation_manifest=None, evaluation_result=None,
                 evaluation_end=None, min_inference_units=None, max_inference_units=None)


def test_a_name_is_taken_once(store: Store) -> None:
    assert store.projects.add("p", "arn:p", 1.0)
    assert not store.projects.add("p", "arn:other", 2.0)
    assert store.projects.get("p").arn == "arn:p"


def test_a_guarded_transition_applies_once(store: Store) -> None:
    store.projects.add("p", "arn:p", 1.0)
    store.models.add(_model("p", 1))
    assert store.models.transition("p", 1, ("TRAINING",), "TRAINED", "done", performance={"F1Score": 0.5})
    # a second run of the job finds the model moved on and changes nothing
    assert not store.models.transition("p", 1, ("TRAINING",), "TRAINING_FAILED", "second run")
    assert not store.models.set_message("p", 1, "TRAINING", "progress of a second run")
    model = store.models.get("p", 1)
    assert (model.status, model.status_message, model.performance) == ("TRAINED", "done", {"F1Score": 0.5})


def test_model_versions_are_unique_across_threads_and_never_reused(store: Store) -> None:
    store.projects.add("p", "arn:p", 1.0)
    got: list[int] = []
    barrier = threading.Barrier(12)

    def take() -> None:
        barrier.wait()
        for _ in range(5):
            got.append(store.models.next_version("p"))

    threads = [threading.Thread(target=take) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(got) == list(range(1, 61))
    version = store.models.next_version("p")
    store.models.add(_model("p", version))
    store.models.delete("p", version)  # DeleteModel
    assert store.models.next_version("p") == version + 1


def test_a_failed_transaction_changes_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        store.projects.add("p", "arn:p", 1.0)
        store.tags.put("arn:p", [])
        raise RuntimeError("the caller's check failed")
    assert store.projects.get("p") is None


def test_deleting_a_project_takes_its_rows_along(store: Store) -> None:
    store.projects.add("p", "arn:p", 1.0)
    store.datasets.add("p", "train", "CREATE_COMPLETE", "made", 1.0, None)
    store.models.add(_model("p", 1))
    store.projects.delete("p")
    assert store.datasets.get("p", "train") is None and store.models.get("p", 1) is None


def test_source_ref_filter_is_case_sensitive(store: Store) -> None:
    from emulator.store.records import NewEntry

    store.projects.add("p", "arn:p", 1.0)
    store.datasets.add("p", "train", "CREATE_COMPLETE", "made", 1.0, None)
    store.entries.put("p", "train", [NewEntry("s3://b/Cat.png", "{}", None, 1, 1),
                                     NewEntry("s3://b/cat_%.png", "{}", None, 1, 1)], 1.0)
    assert [e.source_ref for e in store.entries.page("p", "train", 0, 10, source_ref_contains="cat")] == \
        ["s3://b/cat_%.png"]
    assert [e.source_ref for e in store.entries.page("p", "train", 0, 10, source_ref_contains="_%")] == \
        ["s3://b/cat_%.png"]
    assert store.entries.page("p", "train", 0, 10, source_ref_contains="cat\x00") == []  # PostgreSQL: no 500


def test_a_projects_picture_is_its_first_anomaly_else_its_first_image(store: Store) -> None:
    from emulator.store.records import NewEntry

    store.projects.add("p", "arn:p", 1.0)
    assert store.entries.picture("p") is None
    for dataset_type in ("train", "test"):
        store.datasets.add("p", dataset_type, "CREATE_COMPLETE", "made", 1.0, None)
    store.entries.put("p", "train", [NewEntry("s3://b/c.png", "{}", None, 1, 1)], 1.0)
    assert store.entries.picture("p") == "s3://b/c.png"
    store.entries.put("p", "test", [NewEntry("s3://b/b.png", "{}", "normal", 1, 1)], 1.0)
    assert store.entries.picture("p") == "s3://b/b.png"  # the first by source-ref, labelled or not
    store.entries.put("p", "train", [NewEntry("s3://b/z.png", "{}", "anomaly", 1, 1),
                                     NewEntry("s3://b/y.png", "{}", "anomaly", 1, 1)], 1.0)
    store.entries.put("p", "test", [NewEntry("s3://b/x.png", "{}", "anomaly", 1, 1)], 1.0)
    assert store.entries.picture("p") == "s3://b/x.png"  # an anomaly first, of either dataset
    store.projects.add("q", "arn:q", 1.0)
    assert store.entries.picture("q") is None


def test_a_projects_picture_is_found_in_the_index_not_by_reading_its_entries(tmp_path: Path) -> None:
    """SQLite's plan for each query `picture` runs: a search of ix_dataset_entries_picture, neither a
    scan of the project's entries nor a sort of them."""
    from sqlalchemy import event

    from emulator.store.records import NewEntry

    store = Store.open(sqlite_url(tmp_path / "metadata.sqlite3"))
    store.projects.add("p", "arn:p", 1.0)
    store.datasets.add("p", "train", "CREATE_COMPLETE", "made", 1.0, None)
    store.entries.put("p", "train", [NewEntry(f"s3://b/{n}.png", "{}", "normal", 1, 1) for n in range(50)], 1.0)
    statements: list[tuple[str, tuple[object, ...]]] = []

    def remember(conn: object, cursor: object, statement: str, parameters: tuple[object, ...], *_: object) -> None:
        statements.append((statement, parameters))

    event.listen(store.database.engine, "before_cursor_execute", remember)
    try:
        assert store.entries.picture("p") == "s3://b/0.png"
    finally:
        event.remove(store.database.engine, "before_cursor_execute", remember)
    assert len(statements) == 3  # no anomaly: the first normal image and the first unlabelled one
    with store.database.connection() as conn:
        for statement, parameters in statements:
            plan = " / ".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters))
            assert "USING COVERING INDEX ix_dataset_entries_picture" in plan and "TEMP B-TREE" not in plan, plan
    store.close()


def test_a_file_that_is_not_a_database_is_one_store_error(tmp_path: Path) -> None:
    path = tmp_path / "metadata.sqlite3"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError, match="metadata.sqlite3") as refused:
        Store.open(sqlite_url(path))
    assert "\n" not in str(refused.value)


def test_a_url_of_another_database_is_refused() -> None:
    with pytest.raises(StoreError, match="mysql"):
        Store.open("mysql://user@localhost/lookout")


@needs_postgres
def test_postgres_behind_on_its_schema_is_refused_until_upgraded(postgres_url: str) -> None:
    with pytest.raises(SchemaBehind, match="db upgrade"):
        Store.open(postgres_url)
    assert Store.upgrade(postgres_url) == "none"
    assert Store.upgrade(postgres_url) == head()  # once per deploy; again changes nothing
    Store.open(postgres_url).close()


@needs_postgres
def test_the_job_queue_schema_comes_and_goes_with_its_revision(postgres_url: str) -> None:
    """Revision 0002 creates procrastinate's objects on PostgreSQL; downgrading it drops every one."""
    from alembic import command
    from sqlalchemy import text

    from emulator.store.migrate import _config

    def queue_objects(store: Store) -> int:
        with store.database.connection() as conn:
            return int(conn.execute(text(
                "SELECT (SELECT count(*) FROM pg_tables WHERE tablename LIKE 'procrastinate%') + "
                "(SELECT count(*) FROM pg_proc WHERE proname LIKE 'procrastinate%') + "
                "(SELECT count(*) FROM pg_type WHERE typname LIKE 'procrastinate%' AND typtype IN ('e', 'c'))"
            )).scalar_one())

    Store.upgrade(postgres_url)
    store = Store.open(postgres_url)
    try:
        assert queue_objects(store) > 20
        with store.database.transaction() as conn:
            command.downgrade(_config(conn), "0001")
        assert queue_objects(store) == 0
    finally:
        store.close()
    assert Store.upgrade(postgres_url) == "0001"  # and back again


_FROZEN_WRITER = """
import sys, time
from emulator.store import Store
store = Store.open(sys.argv[1])
with store.transaction():
    store.projects.add("frozen", "arn:frozen", 1.0)
    print("in the transaction", flush=True)
    time.sleep(600)
"""


@needs_postgres
def test_a_node_frozen_inside_a_write_transaction_stops_the_fleets_writes_for_a_bounded_time(
        postgres_url: str) -> None:
    """Every write takes one advisory lock: a node stopped while it holds it (a paused VM, SIGSTOP) must
    not stop the other nodes' writes for good. The server ends its idle transaction and rolls it back."""
    from emulator.store.database import IDLE_IN_TRANSACTION_TIMEOUT_S

    Store.upgrade(postgres_url)
    frozen = subprocess.Popen([sys.executable, "-c", _FROZEN_WRITER, postgres_url], stdout=subprocess.PIPE,
                              text=True)
    store = Store.open(postgres_url)
    try:
        assert frozen.stdout is not None and frozen.stdout.readline() == "in the transaction\n"
        frozen.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        written = threading.Event()
        # On a thread: without the bound the write would wait for as long as the node stays frozen.
        threading.Thread(target=lambda: store.projects.add("live", "arn:live", 2.0) and written.set(),
                         daemon=True).start()
        assert written.wait(IDLE_IN_TRANSACTION_TIMEOUT_S + 10), "the frozen node still holds the write lock"
        assert time.monotonic() - started > IDLE_IN_TRANSACTION_TIMEOUT_S / 2  # it did wait for that lock
        assert store.projects.get("frozen") is None  # its transaction was rolled back, not half-kept
        assert store.projects.get("live") is not None
    finally:
        frozen.kill()
        frozen.wait(30)
        frozen.stdout.close()
        store.close()


def test_tables_match_the_migrations(store: Store) -> None:
    """The schema module and the migrations describe the same tables (no migration forgotten)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from emulator.store.migrate import ours

    with store.database.connection() as conn:
        differences = compare_metadata(MigrationContext.configure(conn, opts={"include_name": ours}),
                                       schema.metadata)
    assert differences == []


def test_console_sessions_end_by_sign_out_or_expiry(store: Store) -> None:
    store.console_sessions.add("a", "key", expires_at=100.0, now=10.0)
    store.console_sessions.add("b", "key", expires_at=200.0, now=10.0)
    assert store.console_sessions.is_live("a", "key", now=50.0)
    assert not store.console_sessions.is_live("a", "other-key", now=50.0)
    assert not store.console_sessions.is_live("a", "key", now=150.0)  # expired
    store.console_sessions.end("b")
    assert not store.console_sessions.is_live("b", "key", now=50.0)  # signed out


def test_sign_in_failures_lock_out_and_are_pruned_after_the_period(store: Store) -> None:
    attempts, period = store.signin_attempts, 0.5
    for _ in range(4):
        assert attempts.failed(["key", "address a"], 5, period) == []
    attempts.forget(["address a"])  # a right secret from the address: its count starts again
    assert attempts.failed(["key", "address a"], 5, period) == ["key"]
    assert 0 < attempts.wait(["address a", "key"]) <= period and attempts.wait(["address a"]) == 0
    time.sleep(period + 0.1)
    assert attempts.wait(["key"]) == 0
    assert attempts.failed(["address b"], 5, period) == []  # prunes every row of the period before
    with store.transaction() as conn:
        assert conn.execute(select(schema.signin_failures.c.name)).scalars().all() == ["address b"]
        assert conn.execute(select(schema.signin_lockouts.c.name)).scalars().all() == []


def test_readiness_sees_a_schema_another_node_changed(store: Store) -> None:
    assert store.ping() is None and store.schema_problem() is None
    with store.transaction() as db:
        db.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    assert "9999" in (store.schema_problem() or "")
    with store.transaction() as db:
        db.exec_driver_sql(f"UPDATE alembic_version SET version_num = '{head()}'")
        db.execute(DropTable(schema.tags))
    assert store.schema_problem() == "the schema is not current: table tags is missing"


def test_a_database_damaged_after_opening_is_a_corrupt_database_error(tmp_path: Path) -> None:
    path = tmp_path / "metadata.sqlite3"
    store = Store.open(sqlite_url(path))
    store.projects.add("p", "arn:p", 1.0)
    store.close()
    path.write_bytes(b"\0" * 4096 + path.read_bytes()[4096:])  # the header page gone
    with pytest.raises(CorruptDatabase, match="is damaged"):
        Store.open(sqlite_url(path))


# ------------------------------------------------------------------- hostings (emulator.services.hosting)
def test_a_node_counts_until_it_misses_its_heartbeats(store: Store) -> None:
    hostings = store.hostings
    hostings.beat("a", ("api", "inference"), 0.1)
    hostings.beat("b", ("inference",), 60)  # beats rarely: alive for long
    hostings.put("a", "p", 1, "serving", None)
    hostings.put("b", "p", 1, "failed", "no artifact")
    assert [(n.node_id, n.roles, n.heartbeat_seconds) for n in hostings.live_nodes(3)] == [
        ("a", ("api", "inference"), 0.1), ("b", ("inference",), 60)]
    assert [(h.node_id, h.state, h.message) for h in hostings.live(3)] == [("a", "serving", None),
                                                                          ("b", "failed", "no artifact")]
    time.sleep(0.4)  # a missed three 0.1 s heartbeats: dead; b, silent as long, missed none
    assert [h.node_id for h in hostings.live(3)] == ["b"]
    assert hostings.forget_dead(3) == ["a"]
    hostings.beat("a", ("api", "inference"), 0.1)  # a node dropped while it was frozen registers again
    assert [n.node_id for n in hostings.live_nodes(3)] == ["a", "b"]
    hostings.clear("p", 1)  # a new StartModel: earlier outcomes go
    assert hostings.live(3) == []
    hostings.put("a", "p", 1, "loading", None)
    hostings.leave("a")
    assert (hostings.live(3), [n.node_id for n in hostings.live_nodes(3)]) == ([], ["b"])
    assert hostings.forget_dead(0) == ["b"]  # the embedded server at start: whoever was there is gone


@needs_postgres
def test_an_announcement_wakes_a_listener_when_its_transaction_commits(postgres_url: str) -> None:
    Store.upgrade(postgres_url)
    opened = Store.open(postgres_url)
    heard, stopping = threading.Event(), threading.Event()
    listener = threading.Thread(target=opened.hostings.listen, args=(heard.set, stopping))
    try:
        listener.start()
        time.sleep(0.5)  # LISTEN is in place
        with opened.transaction():
            opened.hostings.announce()
            assert not heard.wait(0.5)  # not before the commit
        assert heard.wait(5)
    finally:
        stopping.set()
        listener.join(5)
        opened.close()
    assert not listener.is_alive()


def test_sqlite_has_nothing_to_listen_to(tmp_path: Path) -> None:
    opened = Store.open(sqlite_url(tmp_path / "metadata.sqlite3"))
    try:
        opened.hostings.announce()
        opened.hostings.listen(pytest.fail, threading.Event())  # returns at once, calls nothing
    finally:
        opened.close()
