"""Per-resource repositories: every query of the metadata database, taking and returning typed
records (`emulator.store.records`). Services and the console call these methods and write no SQL.

Each status change is one guarded update here (``UPDATE ... WHERE status IN (:expected)``) that
reports whether it applied: a job that runs a second time, or a caller that lost a race, finds the
row already moved on and changes nothing. A method called inside ``Store.transaction()`` runs in
that transaction.
"""
from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Executable,
    Row,
    Select,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from emulator.store import records, schema
from emulator.store.database import Database

R = TypeVar("R")
# The PostgreSQL channel on which a change of what should be hosted is announced to every node.
HOSTING_CHANNEL = "lookout_hosting"
# How long `Hostings.listen` waits for a notification before it looks at its stop flag again.
LISTEN_TIMEOUT_S = 0.25
# SQLite's julianday() of 1970-01-01T00:00Z, and seconds per day: the database's clock as epoch seconds.
_JULIAN_DAY_OF_EPOCH = 2440587.5
_SECONDS_PER_DAY = 86400.0


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _unjson(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _decode(row: Row[Any], record: type[R], json_columns: tuple[str, ...] = ()) -> R:
    """The record of a row, its JSON text columns decoded."""
    values = dict(row._mapping)
    return record(**{**values, **{name: _unjson(values[name]) for name in json_columns}})


def _key(table: Table, **values: Any) -> ColumnElement[bool]:
    """The condition that picks a row by its primary key columns."""
    return and_(*(table.c[name] == value for name, value in values.items()))


@functools.cache
def _by_key(table: Table, names: tuple[str, ...]) -> Select[Any]:
    """SELECT of one row by key, built once: building a statement costs as much as running it, and
    these lookups are on every request's path (DescribeModel, DetectAnomalies)."""
    return select(table).where(and_(*(table.c[name] == bindparam(name) for name in names)))


def _database_now(database: Database) -> ColumnElement[Any]:
    """The database's time in seconds since the epoch: what times shared by several nodes are written
    in, so that nodes on machines whose clocks differ still agree."""
    if database.dialect == "postgresql":
        return func.extract("epoch", func.clock_timestamp())
    return (func.julianday("now") - _JULIAN_DAY_OF_EPOCH) * _SECONDS_PER_DAY


class _Repository:
    def __init__(self, database: Database) -> None:
        self._db = database

    def _rows(self, statement: Executable) -> Sequence[Row[Any]]:
        with self._db.connection() as conn:
            return conn.execute(statement).all()

    def _first(self, statement: Executable) -> Row[Any] | None:
        with self._db.connection() as conn:
            return conn.execute(statement).first()

    def _get(self, table: Table, decode: Callable[[Row[Any]], R], **key: Any) -> R | None:
        """The row of `table` with this primary key, decoded; None if there is none."""
        with self._db.connection() as conn:
            row = conn.execute(_by_key(table, tuple(key)), key).first()
        return None if row is None else decode(row)

    def _one(self, statement: Executable) -> Row[Any]:
        with self._db.connection() as conn:
            return conn.execute(statement).one()

    def _write(self, statement: Executable, parameters: list[dict[str, Any]] | None = None) -> int:
        """Run a change in the caller's transaction (or one of its own); the rows it touched."""
        with self._db.transaction() as conn:
            return conn.execute(statement, parameters).rowcount if parameters is not None \
                else conn.execute(statement).rowcount

    def _upsert(self, table: Table) -> Any:
        """INSERT with ON CONFLICT clauses: both dialects spell it alike, each needs its own construct."""
        return (postgresql.insert(table) if self._db.dialect == "postgresql" else sqlite.insert(table))


class Projects(_Repository):
    def get(self, name: str) -> records.Project | None:
        return self._get(schema.projects, lambda row: records.Project(**row._mapping), name=name)

    def add(self, name: str, arn: str, created_at: float) -> bool:
        """Create the project; False if one of that name exists."""
        return self._write(self._upsert(schema.projects).values(name=name, arn=arn, created_at=created_at)
                           .on_conflict_do_nothing()) == 1

    def page(self, after: str, limit: int) -> list[records.Project]:
        """Projects by name, the first `limit` after `after`."""
        c = schema.projects.c
        return [records.Project(**row._mapping)
                for row in self._rows(select(schema.projects).where(c.name > after).order_by(c.name).limit(limit))]

    def delete(self, name: str) -> None:
        """Delete the project; its datasets, models, versions, packaging jobs and trials go with it."""
        self._write(delete(schema.projects).where(schema.projects.c.name == name))


def _dataset(row: Row[Any]) -> records.Dataset:
    return _decode(row, records.Dataset, ("manifest", "pending_changes"))


class Datasets(_Repository):
    def _key(self, project: str, dataset_type: str) -> ColumnElement[bool]:
        return _key(schema.datasets, project=project, dataset_type=dataset_type)

    def get(self, project: str, dataset_type: str) -> records.Dataset | None:
        return self._get(schema.datasets, _dataset, project=project, dataset_type=dataset_type)

    def of_project(self, project: str) -> list[records.Dataset]:
        """The project's datasets, train first."""
        c = schema.datasets.c
        return [_dataset(row) for row in self._rows(
            select(schema.datasets).where(c.project == project).order_by(c.dataset_type == "test", c.dataset_type))]

    def first_in(self, project: str, statuses: Iterable[str]) -> records.Dataset | None:
        """A dataset of the project in one of `statuses` (the test dataset before the train dataset)."""
        c = schema.datasets.c
        row = self._first(select(schema.datasets).where(c.project == project, c.status.in_(list(statuses)))
                          .order_by(c.dataset_type.desc()).limit(1))
        return None if row is None else _dataset(row)

    def all_in(self, statuses: Iterable[str]) -> list[records.Dataset]:
        """Every dataset in one of `statuses` (recovery: the jobs a restart interrupted)."""
        c = schema.datasets.c
        return [_dataset(row) for row in self._rows(select(schema.datasets).where(c.status.in_(list(statuses)))
                                                    .order_by(c.project, c.dataset_type))]

    def add(self, project: str, dataset_type: str, status: str, message: str, created_at: float,
            manifest: dict[str, Any] | None) -> bool:
        """Create the dataset; False if the project already has one of this type."""
        return self._write(self._upsert(schema.datasets).values(
            project=project, dataset_type=dataset_type, status=status, status_message=message, created_at=created_at,
            updated_at=created_at, manifest=_json(manifest)).on_conflict_do_nothing()) == 1

    def delete(self, project: str, dataset_type: str) -> None:
        """Delete the dataset and its entries."""
        self._write(delete(schema.datasets).where(self._key(project, dataset_type)))

    def set_message(self, project: str, dataset_type: str, message: str, updated_at: float) -> None:
        self._write(update(schema.datasets).where(self._key(project, dataset_type))
                    .values(status_message=message, updated_at=updated_at))

    def transition(self, project: str, dataset_type: str, expected: Iterable[str], status: str, message: str,
                   updated_at: float, pending_changes: list[Any] | None = None) -> bool:
        """Move the dataset from one of the `expected` statuses to `status` (with the update's input
        as `pending_changes`, None once it is applied); False if it was in none of them."""
        c = schema.datasets.c
        return self._write(update(schema.datasets)
                           .where(self._key(project, dataset_type), c.status.in_(list(expected)))
                           .values(status=status, status_message=message, updated_at=updated_at,
                                   pending_changes=_json(pending_changes))) == 1


class Entries(_Repository):
    """Dataset entries: the JSON lines of each dataset, in insertion order."""

    def of_dataset(self, project: str, dataset_type: str) -> list[records.DatasetEntry]:
        c = schema.dataset_entries.c
        return [records.DatasetEntry(**row._mapping) for row in self._rows(
            select(schema.dataset_entries).where(c.project == project, c.dataset_type == dataset_type)
            .order_by(c.seq))]

    def of_project(self, project: str) -> list[records.DatasetEntry]:
        c = schema.dataset_entries.c
        return [records.DatasetEntry(**row._mapping)
                for row in self._rows(select(schema.dataset_entries).where(c.project == project).order_by(c.seq))]

    def page(self, project: str, dataset_type: str, after_seq: int, limit: int, *, labeled: bool | None = None,
             label: str | None = None, before: float | None = None, after: float | None = None,
             source_ref_contains: str | None = None) -> list[records.DatasetEntry]:
        """ListDatasetEntries: the entries after `after_seq` that pass the filters given."""
        c = schema.dataset_entries.c
        conditions = [c.project == project, c.dataset_type == dataset_type, c.seq > after_seq]
        if labeled is not None:
            conditions.append(c.label.is_not(None) if labeled else c.label.is_(None))
        if label is not None:
            conditions.append(c.label == label)
        if before is not None:
            conditions.append(c.created_at < before)
        if after is not None:
            conditions.append(c.created_at > after)
        if source_ref_contains is not None:  # case-sensitive on both databases (LIKE is not on SQLite)
            if "\x00" in source_ref_contains:  # no stored text holds NUL, and PostgreSQL can't even be asked
                return []
            position = func.strpos if self._db.dialect == "postgresql" else func.instr
            conditions.append(position(c.source_ref, source_ref_contains) > 0)
        return [records.DatasetEntry(**row._mapping) for row in self._rows(
            select(schema.dataset_entries).where(*conditions).order_by(c.seq).limit(limit))]

    def picture(self, project: str) -> str | None:
        """The source-ref the console's project list shows the project by: its first anomaly by
        source-ref, else its first image (None without entries). A seek in ix_dataset_entries_picture per
        label, so the list costs the same however many entries its projects have."""
        c = schema.dataset_entries.c

        def first(label: ColumnElement[bool]) -> str | None:
            row = self._first(select(c.source_ref).where(c.project == project, label).order_by(c.source_ref).limit(1))
            return None if row is None else str(row.source_ref)

        anomaly = first(c.label == "anomaly")
        if anomaly is not None:
            return anomaly
        return min(filter(None, (first(c.label == "normal"), first(c.label.is_(None)))), default=None)

    def stats(self, project: str, dataset_type: str) -> records.ImageStats:
        c = schema.dataset_entries.c
        row = self._one(select(
            func.count().label("total"), func.count(c.label).label("labeled"),
            func.coalesce(func.sum(case((c.label == "normal", 1), else_=0)), 0).label("normal"),
            func.coalesce(func.sum(case((c.label == "anomaly", 1), else_=0)), 0).label("anomaly"),
        ).where(c.project == project, c.dataset_type == dataset_type))
        return records.ImageStats(**{name: int(value) for name, value in row._mapping.items()})

    def remove(self, project: str, dataset_type: str, source_refs: Iterable[str]) -> int:
        """Remove the entries with these source-refs; how many there were."""
        c = schema.dataset_entries.c
        return self._write(delete(schema.dataset_entries).where(
            c.project == project, c.dataset_type == dataset_type, c.source_ref.in_(list(set(source_refs)))))

    def put(self, project: str, dataset_type: str, entries: Sequence[records.NewEntry], created_at: float) -> None:
        """Add entries, replacing those with the same source-ref (which keep their place and creation time)."""
        if not entries:
            return
        statement = self._upsert(schema.dataset_entries)
        self._write(statement.on_conflict_do_update(
            index_elements=["project", "dataset_type", "source_ref"],
            set_={name: statement.excluded[name] for name in ("line", "label", "width", "height")}),
            [{"project": project, "dataset_type": dataset_type, "source_ref": e.source_ref, "line": e.line,
              "label": e.label, "width": e.width, "height": e.height, "created_at": created_at} for e in entries])


_MODEL_JSON = ("performance", "evaluation_manifest", "evaluation_result")


def _model(row: Row[Any]) -> records.Model:
    return _decode(row, records.Model, _MODEL_JSON)


class Models(_Repository):
    def _key(self, project: str, version: int) -> ColumnElement[bool]:
        return _key(schema.models, project=project, version=version)

    def get(self, project: str, version: int) -> records.Model | None:
        return self._get(schema.models, _model, project=project, version=version)

    def latest(self, project: str) -> records.Model | None:
        c = schema.models.c
        row = self._first(select(schema.models).where(c.project == project).order_by(c.version.desc()).limit(1))
        return None if row is None else _model(row)

    def page(self, project: str, after_version: int, limit: int) -> list[records.Model]:
        c = schema.models.c
        return [_model(row) for row in self._rows(select(schema.models).where(
            c.project == project, c.version > after_version).order_by(c.version).limit(limit))]

    def versions(self, project: str) -> list[int]:
        c = schema.models.c
        return [row.version for row in self._rows(select(c.version).where(c.project == project).order_by(c.version))]

    def all_in(self, statuses: Iterable[str]) -> list[records.Model]:
        """Every model in one of `statuses`, oldest first (recovery)."""
        c = schema.models.c
        return [_model(row) for row in self._rows(select(schema.models).where(c.status.in_(list(statuses)))
                                                  .order_by(c.created_at, c.project, c.version))]

    def any_in(self, statuses: Iterable[str]) -> bool:
        c = schema.models.c
        return self._first(select(c.version).where(c.status.in_(list(statuses))).limit(1)) is not None

    def next_version(self, project: str) -> int:
        """Hand out the project's next model version: one atomic upsert, so two callers (threads or
        nodes) never get the same one, and a version is never reused after DeleteModel."""
        c = schema.model_versions.c
        statement = self._upsert(schema.model_versions).values(project=project, last_version=1)
        statement = statement.on_conflict_do_update(
            index_elements=["project"], set_={"last_version": c.last_version + 1}).returning(c.last_version)
        with self._db.transaction() as conn:
            return int(conn.execute(statement).scalar_one())

    def add(self, model: records.Model) -> None:
        values = {name: getattr(model, name) for name in schema.models.c.keys()}
        self._write(insert(schema.models).values(**{**values, **{name: _json(values[name]) for name in _MODEL_JSON}}))

    def delete(self, project: str, version: int) -> None:
        self._write(delete(schema.models).where(self._key(project, version)))

    def transition(self, project: str, version: int, expected: Iterable[str], status: str, message: str,
                   **columns: Any) -> bool:
        """Move the model from one of the `expected` statuses to `status`, with other columns
        (JSON ones given as values); False if it was in none of them (or is gone)."""
        return self._transition(self._key(project, version), expected, status, message, columns) == 1

    def set_message(self, project: str, version: int, status: str, message: str) -> bool:
        """Change the StatusMessage of a model that is still in `status` (e.g. training progress)."""
        return self._transition(self._key(project, version), (status,), status, message, {}) == 1

    def set_progress(self, project: str, version: int, status: str, progress: records.TrainingProgress,
                     message: str) -> bool:
        """Record where the training of a model still in `status` (TRAINING) is, with its StatusMessage, so
        that every node shows the same; False (nothing written) if the model is no longer in `status`."""
        values = {"started": progress.started, "stage": progress.stage, "fraction": progress.fraction}
        with self._db.transaction():
            if not self.set_message(project, version, status, message):
                return False
            self._write(self._upsert(schema.training_progress).values(project=project, version=version, **values)
                        .on_conflict_do_update(index_elements=["project", "version"], set_=values))
            return True

    def progress(self, project: str, version: int) -> records.TrainingProgress | None:
        """Where the model's training last was; None before its job reported any."""
        return self._get(schema.training_progress,
                         lambda row: records.TrainingProgress(row.started, row.stage, row.fraction),
                         project=project, version=version)

    def _transition(self, which: ColumnElement[bool], expected: Iterable[str], status: str, message: str,
                    columns: dict[str, Any]) -> int:
        values = {name: _json(value) if name in _MODEL_JSON else value for name, value in columns.items()}
        return self._write(update(schema.models).where(which, schema.models.c.status.in_(list(expected)))
                           .values(status=status, status_message=message, **values))


def _packaging_job(row: Row[Any]) -> records.PackagingJob:
    return _decode(row, records.PackagingJob, ("configuration", "output_details"))


class PackagingJobs(_Repository):
    def _key(self, project: str, job_name: str) -> ColumnElement[bool]:
        return _key(schema.packaging_jobs, project=project, job_name=job_name)

    def get(self, project: str, job_name: str) -> records.PackagingJob | None:
        return self._get(schema.packaging_jobs, _packaging_job, project=project, job_name=job_name)

    def add(self, project: str, job_name: str, model_version: int, status: str, message: str,
            description: str | None, configuration: dict[str, Any], created_at: float) -> bool:
        """Create the job; False if the project has a job of that name."""
        return self._write(self._upsert(schema.packaging_jobs).values(
            project=project, job_name=job_name, model_version=model_version, status=status, status_message=message,
            description=description, configuration=json.dumps(configuration), created_at=created_at,
            updated_at=created_at).on_conflict_do_nothing()) == 1

    def page(self, project: str, after_created: float, after_name: str, limit: int) -> list[records.PackagingJob]:
        """The project's jobs by creation time and name, after the position given."""
        c = schema.packaging_jobs.c
        return [_packaging_job(row) for row in self._rows(select(schema.packaging_jobs).where(
            c.project == project,
            or_(c.created_at > after_created, and_(c.created_at == after_created, c.job_name > after_name)))
            .order_by(c.created_at, c.job_name).limit(limit))]

    def all_in(self, statuses: Iterable[str], project: str | None = None,
               model_version: int | None = None) -> list[records.PackagingJob]:
        """The jobs in one of `statuses` (of one project's model version, if given)."""
        c = schema.packaging_jobs.c
        conditions: list[ColumnElement[bool]] = [c.status.in_(list(statuses))]
        if project is not None:
            conditions.append(c.project == project)
        if model_version is not None:
            conditions.append(c.model_version == model_version)
        return [_packaging_job(row) for row in self._rows(
            select(schema.packaging_jobs).where(*conditions).order_by(c.created_at, c.project, c.job_name))]

    def transition(self, project: str, job_name: str, expected: Iterable[str], status: str, message: str,
                   updated_at: float, output_details: dict[str, Any] | None = None) -> bool:
        """Move the job from one of the `expected` statuses to `status`; False if it was in none."""
        c = schema.packaging_jobs.c
        return self._write(update(schema.packaging_jobs)
                           .where(self._key(project, job_name), c.status.in_(list(expected)))
                           .values(status=status, status_message=message, updated_at=updated_at,
                                   output_details=_json(output_details))) == 1


class Tags(_Repository):
    def of(self, arn: str) -> list[records.Tag]:
        """The resource's tags by key."""
        c = schema.tags.c
        return [records.Tag(row.key, row.value)
                for row in self._rows(select(c.key, c.value).where(c.resource_arn == arn).order_by(c.key))]

    def put(self, arn: str, tags: Sequence[records.Tag]) -> None:
        """Add tags, replacing the values of keys the resource has."""
        if not tags:
            return
        statement = self._upsert(schema.tags)
        self._write(statement.on_conflict_do_update(index_elements=["resource_arn", "key"],
                                                    set_={"value": statement.excluded.value}),
                    [{"resource_arn": arn, "key": tag.key, "value": tag.value} for tag in tags])

    def remove(self, arn: str, keys: Iterable[str] | None = None) -> None:
        """Remove the tags with these keys (all the resource's tags without `keys`)."""
        c = schema.tags.c
        statement = delete(schema.tags).where(c.resource_arn == arn)
        self._write(statement if keys is None else statement.where(c.key.in_(list(keys))))


class ClientTokens(_Repository):
    def find(self, operation: str, token: str, since: float) -> records.ClientToken | None:
        """The first response to (operation, token) if it was given after `since`."""
        c = schema.client_tokens.c
        row = self._first(select(c.input_hash, c.response).where(c.operation == operation, c.token == token,
                                                                 c.created_at > since))
        return None if row is None else records.ClientToken(row.input_hash, row.response)

    def remember(self, operation: str, token: str, input_hash: str, response: str, created_at: float,
                 forget_before: float) -> None:
        """Record a response, and forget those older than `forget_before`."""
        c = schema.client_tokens.c
        statement = self._upsert(schema.client_tokens).values(
            operation=operation, token=token, input_hash=input_hash, response=response, created_at=created_at)
        with self._db.transaction() as conn:
            conn.execute(delete(schema.client_tokens).where(c.created_at <= forget_before))
            conn.execute(statement.on_conflict_do_update(
                index_elements=["operation", "token"],
                set_={name: statement.excluded[name] for name in ("input_hash", "response", "created_at")}))


class ConsoleSettings(_Repository):
    def get(self, name: str) -> str | None:
        c = schema.console_settings.c
        row = self._first(select(c.value).where(c.name == name))
        return None if row is None else str(row.value)

    def setdefault(self, name: str, value: str) -> str:
        """The setting's value, set to `value` first if it has none (the first caller wins a race)."""
        c = schema.console_settings.c
        with self._db.transaction() as conn:
            conn.execute(self._upsert(schema.console_settings).values(name=name, value=value)
                         .on_conflict_do_nothing())
            return str(conn.execute(select(c.value).where(c.name == name)).scalar_one())


class ConsoleSessions(_Repository):
    """Console sign-ins not signed out: kept in the store, not the cookie, so that signing out holds
    on every server sharing the database and across restarts."""

    def add(self, session_id: str, key_id: str, expires_at: float, now: float) -> None:
        """Record a sign-in, forgetting the sessions that have expired by `now`."""
        c = schema.console_sessions.c
        with self._db.transaction() as conn:
            conn.execute(delete(schema.console_sessions).where(c.expires_at <= now))
            conn.execute(insert(schema.console_sessions).values(id=session_id, key_id=key_id, expires_at=expires_at))

    def is_live(self, session_id: str, key_id: str, now: float) -> bool:
        """Whether this key's sign-in has neither been signed out nor expired."""
        c = schema.console_sessions.c
        return self._first(select(c.id).where(c.id == session_id, c.key_id == key_id, c.expires_at > now)) is not None

    def end(self, session_id: str) -> None:
        self._write(delete(schema.console_sessions).where(schema.console_sessions.c.id == session_id))


class SignInAttempts(_Repository):
    """Failed console sign-ins and the lockouts they led to, per name (an access key id, a client
    address): shared by every node and kept across restarts, timed by the database's clock. The
    rules (how many failures, how long) are the caller's (emulator.security.throttle)."""

    def wait(self, names: Iterable[str]) -> float:
        """Seconds until none of `names` is locked out; 0 when none is now."""
        c = schema.signin_lockouts.c
        left = self._first(select(func.max(c.locked_until - _database_now(self._db)))
                           .where(c.name.in_(list(names))))
        return max(0.0, float(left[0])) if left is not None and left[0] is not None else 0.0

    def failed(self, names: Iterable[str], max_failures: int, lockout_seconds: float) -> list[str]:
        """Count a failure against each name; the names it locks out: those with `max_failures`
        failures within `lockout_seconds`, whose failures are then forgotten. Failures and lockouts
        older than the period are deleted, so the tables hold no more than one period's attempts."""
        failures, lockouts = schema.signin_failures, schema.signin_lockouts
        locked = []
        with self._db.transaction() as conn:
            now = float(conn.execute(select(_database_now(self._db))).scalar_one())
            conn.execute(delete(failures).where(failures.c.failed_at <= now - lockout_seconds))
            conn.execute(delete(lockouts).where(lockouts.c.locked_until <= now))
            for name in names:
                conn.execute(insert(failures).values(name=name, failed_at=now))
                counted = select(func.count()).select_from(failures).where(failures.c.name == name)
                if conn.execute(counted).scalar_one() >= max_failures:
                    conn.execute(delete(failures).where(failures.c.name == name))
                    statement = self._upsert(lockouts).values(name=name, locked_until=now + lockout_seconds)
                    conn.execute(statement.on_conflict_do_update(
                        index_elements=["name"], set_={"locked_until": statement.excluded.locked_until}))
                    locked.append(name)
        return locked

    def forget(self, names: Iterable[str]) -> None:
        """A right secret: the failures of these names so far no longer count."""
        self._write(delete(schema.signin_failures).where(schema.signin_failures.c.name.in_(list(names))))


def _trial_image(row: Row[Any]) -> records.TrialImage:
    return records.TrialImage(
        source_ref=row.source_ref, is_anomalous=None if row.is_anomalous is None else bool(row.is_anomalous),
        confidence=row.confidence, mask_ref=row.mask_ref, heatmap_ref=row.heatmap_ref,
        anomalies=json.loads(row.anomalies or "[]"), error=row.error, verified=row.verified, added=bool(row.added))


class Trials(_Repository):
    """The console's trial detections and their images."""

    def _key(self, project: str, name: str) -> ColumnElement[bool]:
        return _key(schema.trial_detections, project=project, name=name)

    def get(self, project: str, name: str) -> records.Trial | None:
        return self._get(schema.trial_detections, lambda row: records.Trial(**row._mapping), project=project,
                         name=name)

    def all_in(self, status: str) -> list[records.Trial]:
        c = schema.trial_detections.c
        return [records.Trial(**row._mapping) for row in self._rows(
            select(schema.trial_detections).where(c.status == status).order_by(c.created_at))]

    def summaries(self, project: str) -> list[records.TrialSummary]:
        """The project's trials, newest first, with their image counts."""
        t, i = schema.trial_detections.c, schema.trial_images.c
        counts = (select(i.project, i.trial, func.count().label("images"),
                         func.coalesce(func.sum(i.is_anomalous), 0).label("anomalous"),
                         func.count(i.verified).label("verified"))
                  .group_by(i.project, i.trial).subquery())
        rows = self._rows(
            select(schema.trial_detections, func.coalesce(counts.c.images, 0).label("images"),
                   func.coalesce(counts.c.anomalous, 0).label("anomalous"),
                   func.coalesce(counts.c.verified, 0).label("verified"))
            .outerjoin(counts, and_(counts.c.project == t.project, counts.c.trial == t.name))
            .where(t.project == project).order_by(t.created_at.desc()))
        return [records.TrialSummary(**{**row._mapping, "images": int(row.images), "anomalous": int(row.anomalous),
                                        "verified": int(row.verified)}) for row in rows]

    def add(self, trial: records.Trial, source_refs: Iterable[str]) -> bool:
        """Record a trial and its images; False if the project has a trial of that name."""
        fields = {name: getattr(trial, name) for name in schema.trial_detections.c.keys()}
        with self._db.transaction() as conn:
            if conn.execute(self._upsert(schema.trial_detections).values(**fields)
                            .on_conflict_do_nothing()).rowcount != 1:
                return False
            images = [{"project": trial.project, "trial": trial.name, "source_ref": ref} for ref in source_refs]
            if images:
                conn.execute(self._upsert(schema.trial_images).on_conflict_do_nothing(), images)
        return True

    def images(self, project: str, name: str) -> list[records.TrialImage]:
        """The trial's images by source-ref."""
        i = schema.trial_images.c
        return [_trial_image(row) for row in self._rows(
            select(schema.trial_images).where(i.project == project, i.trial == name).order_by(i.source_ref))]

    def pending(self, project: str, name: str) -> list[str]:
        """Source-refs of the trial's images not detected yet (neither a prediction nor an error)."""
        i = schema.trial_images.c
        return [row.source_ref for row in self._rows(
            select(i.source_ref).where(i.project == project, i.trial == name, i.is_anomalous.is_(None),
                                       i.error.is_(None)).order_by(i.source_ref))]

    def record_image(self, project: str, name: str, source_ref: str, *, error: str | None = None,
                     is_anomalous: bool | None = None, confidence: float | None = None, heatmap_ref: str | None = None,
                     mask_ref: str | None = None, anomalies: list[dict[str, Any]] | None = None) -> None:
        """Record an image's prediction, or why there is none."""
        i = schema.trial_images.c
        values = {"error": error, "is_anomalous": None if is_anomalous is None else int(is_anomalous),
                  "confidence": confidence, "heatmap_ref": heatmap_ref, "mask_ref": mask_ref,
                  "anomalies": _json(anomalies)}
        self._write(update(schema.trial_images).where(i.project == project, i.trial == name, i.source_ref == source_ref)
                    .values(**values))

    def verify(self, project: str, name: str, verdicts: dict[str, str]) -> int:
        """Record the user's labels ({source_ref: label}); how many images there were to label."""
        i = schema.trial_images.c
        with self._db.transaction() as conn:
            return sum(conn.execute(update(schema.trial_images).where(
                i.project == project, i.trial == name, i.source_ref == ref).values(verified=label)).rowcount
                for ref, label in verdicts.items())

    def mark_added(self, project: str, name: str, source_refs: Iterable[str]) -> None:
        i = schema.trial_images.c
        self._write(update(schema.trial_images).where(i.project == project, i.trial == name,
                                                      i.source_ref.in_(list(source_refs))).values(added=1))

    def transition(self, project: str, name: str, expected: Iterable[str], status: str, message: str) -> bool:
        """Move the trial from one of the `expected` statuses to `status`; False if it was in none."""
        c = schema.trial_detections.c
        return self._write(update(schema.trial_detections).where(self._key(project, name), c.status.in_(list(expected)))
                           .values(status=status, status_message=message)) == 1


    # The models trials started. Both decisions read and write in one write transaction, which every
    # node's writers take in turn, so two nodes' trials never both start, or both stop, a model.
    def hosting_started(self, project: str, version: int) -> None:
        """Record that a trial started the model (in the caller's transaction, with its StartModel)."""
        self._write(self._upsert(schema.trial_hostings).values(project=project, version=version)
                    .on_conflict_do_nothing())

    def forget_hosting(self, project: str, version: int) -> None:
        """The model is not (or no longer) hosted for trials: a StartModel of its own hosts it now."""
        h = schema.trial_hostings.c
        self._write(delete(schema.trial_hostings).where(h.project == project, h.version == version))

    def last_out(self, project: str, version: int, trial: str, running: str) -> bool:
        """Trial `trial` is done with the model: True if a trial started the model and no other trial
        of the project in status `running` uses it, after forgetting that trials started it (the
        caller stops it in the same transaction)."""
        t, h = schema.trial_detections.c, schema.trial_hostings.c
        with self._db.transaction() as conn:
            started = conn.execute(select(h.version).where(h.project == project, h.version == version)).first()
            if started is None or conn.execute(select(t.name).where(
                    t.project == project, t.model_version == version, t.status == running, t.name != trial)
                    .limit(1)).first() is not None:
                return False
            conn.execute(delete(schema.trial_hostings).where(h.project == project, h.version == version))
        return True

class Hostings(_Repository):
    """The live nodes and the models each holds (hosting as desired state: emulator.services.hosting).

    A node's rows are written by that node (StartModel only clears a model's earlier outcomes). Times
    are the database's clock, not the nodes' own, so that nodes on machines whose clocks differ still
    agree on who is alive, and each node records its own heartbeat interval, so that nodes with
    different ``--job-heartbeat``s do too: a row counts while its node has missed at most `missed`
    heartbeats (callers pass three), and a dead node's rows are deleted by whichever node calls
    `forget_dead` first."""

    def _alive(self, missed: float) -> ColumnElement[bool]:
        """The condition on `nodes` of a node that has missed at most `missed` heartbeats."""
        c = schema.nodes.c
        return c.heartbeat_at >= _database_now(self._db) - missed * c.heartbeat_seconds

    def beat(self, node_id: str, roles: Iterable[str], heartbeat_seconds: float) -> None:
        """Record that the node is alive (registering it on its first beat), and so is what it holds;
        it beats every `heartbeat_seconds`."""
        now = _database_now(self._db)
        statement = self._upsert(schema.nodes).values(node_id=node_id, roles=",".join(roles), started_at=now,
                                                      heartbeat_at=now, heartbeat_seconds=heartbeat_seconds)
        with self._db.transaction():
            self._write(statement.on_conflict_do_update(
                index_elements=["node_id"], set_={"heartbeat_at": now, "heartbeat_seconds": heartbeat_seconds}))
            self._write(update(schema.model_hostings).where(schema.model_hostings.c.node_id == node_id)
                        .values(heartbeat_at=now))

    def leave(self, node_id: str) -> None:
        """The node stops: it and what it held are gone at once (no one waits for its heartbeat to age)."""
        with self._db.transaction():
            self._write(delete(schema.model_hostings).where(schema.model_hostings.c.node_id == node_id))
            self._write(delete(schema.nodes).where(schema.nodes.c.node_id == node_id))

    def forget_dead(self, missed: float) -> list[str]:
        """Delete the nodes (and their rows) that missed more than `missed` heartbeats (0: every node
        that has beaten before now); their ids."""
        c = schema.nodes.c
        with self._db.transaction():
            dead = [row.node_id for row in self._rows(select(c.node_id).where(~self._alive(missed)))]
            if dead:
                self._write(delete(schema.model_hostings).where(schema.model_hostings.c.node_id.in_(dead)))
                self._write(delete(schema.nodes).where(c.node_id.in_(dead)))
        return dead

    def live_nodes(self, missed: float) -> list[records.Node]:
        c = schema.nodes.c
        return [records.Node(**{**row._mapping, "roles": tuple(row.roles.split(","))})
                for row in self._rows(select(schema.nodes).where(self._alive(missed)).order_by(c.node_id))]

    def live(self, missed: float) -> list[records.ModelHosting]:
        """What every live node holds."""
        h, n = schema.model_hostings.c, schema.nodes.c
        return [_decode(row, records.ModelHosting) for row in self._rows(
            select(schema.model_hostings).join(schema.nodes, h.node_id == n.node_id)
            .where(self._alive(missed)).order_by(h.project, h.version, h.node_id))]

    def put(self, node_id: str, project: str, version: int, state: str, message: str | None) -> None:
        """Record what the node holds of a model."""
        now = _database_now(self._db)
        statement = self._upsert(schema.model_hostings).values(
            node_id=node_id, project=project, version=version, state=state, message=message, heartbeat_at=now)
        self._write(statement.on_conflict_do_update(
            index_elements=["node_id", "project", "version"],
            set_={"state": state, "message": message, "heartbeat_at": now}))

    def drop(self, node_id: str, project: str, version: int) -> None:
        """The node no longer holds the model."""
        self._write(delete(schema.model_hostings).where(
            _key(schema.model_hostings, node_id=node_id, project=project, version=version)))

    def announce(self) -> None:
        """Tell every node's reconciler that what should be hosted changed: a PostgreSQL NOTIFY, which
        the database delivers when the caller's transaction commits. (SQLite has one node, woken
        directly.)"""
        if self._db.dialect == "postgresql":
            self._write(select(func.pg_notify(HOSTING_CHANNEL, "")))

    def listen(self, changed: Callable[[], None], stopping: threading.Event) -> None:
        """Call `changed` on every `announce` until `stopping` is set, on a connection of its own
        (PostgreSQL; returns at once on SQLite). Raises what the connection raises."""
        if self._db.dialect != "postgresql":
            return
        import psycopg

        conninfo = self._db.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f"LISTEN {HOSTING_CHANNEL}")
            while not stopping.is_set():
                for _ in conn.notifies(timeout=LISTEN_TIMEOUT_S):
                    changed()

    def clear(self, project: str, version: int) -> None:
        """Forget every node's outcome for the model (StartModel: a new start, earlier failures don't count)."""
        self._write(delete(schema.model_hostings).where(
            _key(schema.model_hostings, project=project, version=version)))
