"""The state of one running emulator: settings, metadata store, object store and job runner.

Service functions receive a Backend instead of reaching for globals, so that several emulators
(e.g. one per pytest fixture) can live in one process.
"""
from __future__ import annotations

import functools
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

from emulator.config import WORKER, Settings
from emulator.datadir import DataDirLock
from emulator.jobs import JobRunner
from emulator.s3.objects import ObjectStore
from emulator.s3.stores import object_store_for
from emulator.store import Store, sqlite_url

if TYPE_CHECKING:
    from emulator.jobqueue import JobQueue

log = logging.getLogger(__name__)
State = TypeVar("State")


class Backend:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock = DataDirLock(settings.data_dir)  # first, so a second server touches nothing
        try:
            self.store = Store.open(settings.database_url or sqlite_url(settings.db_path))
            self.objects: ObjectStore = object_store_for(settings)
        except BaseException:
            self._lock.release()
            raise
        self.jobs: JobRunner | JobQueue = JobRunner(settings.job_workers)
        self._on_close: list[Callable[[], None]] = []
        if not self.store.database.is_sqlite:
            self.jobs = _job_queue(settings)

    def arn(self, resource: str) -> str:
        """ARN of a resource path such as ``project/name`` or ``model/name/1``."""
        return f"arn:aws:lookoutvision:{self.settings.region}:{self.settings.account_id}:{resource}"

    @staticmethod
    def now() -> float:
        return time.time()

    def start(self, recovery: Iterable[RecoveryHook] = ()) -> None:
        """Load S3, then run the `recovery` hooks, which finish or fail the work a crash or restart
        interrupted (see `emulator.jobs`).

        S3 comes first because recovery may re-run a job that reads manifests or images. On
        PostgreSQL the interrupted jobs are still in the durable queue (the hooks resubmit only what it
        lacks, see `JobQueue.submit`), whose worker starts last. On failure everything opened so far is closed again.
        """
        try:
            self.objects.open()
            for hook in recovery:
                hook(self)
            # A node without the worker role submits jobs to the queue but runs none.
            if not isinstance(self.jobs, JobRunner) and WORKER in self.settings.roles:
                self.jobs.start_worker(self)
        except BaseException:
            self.close()
            raise

    def on_close(self, stop: Callable[[], None]) -> None:
        """Have `close` call `stop` first (latest first): for the background work a recovery hook started."""
        self._on_close.append(stop)

    def close(self) -> None:
        """Stop what `on_close` registered, then the jobs (see `JobRunner.shutdown`), then release S3
        and the database."""
        while self._on_close:
            self._on_close.pop()()
        self.jobs.shutdown()
        self.objects.close()
        self.store.close()
        self._lock.release()


RecoveryHook = Callable[[Backend], None]


def _job_queue(settings: Settings) -> JobQueue:
    """The durable job queue of a server on PostgreSQL (imported only then: SQLite needs none of it)."""
    from emulator.jobqueue import JobQueue

    return JobQueue(settings.database_url or "", settings.job_workers, settings.max_trainings,
                    settings.job_heartbeat_seconds, settings.job_kinds)


def per_backend(factory: Callable[[Backend], State]) -> Callable[[Backend], State]:
    """Decorator: `factory(backend)` is made once per backend and kept as long as the backend lives.

    For in-memory state a module keeps for each emulator (hosted models, trial hosting): several
    emulators can share one process, e.g. in tests.
    """
    made: weakref.WeakKeyDictionary[Backend, State] = weakref.WeakKeyDictionary()
    lock = threading.Lock()

    @functools.wraps(factory)
    def get(backend: Backend) -> State:
        with lock:
            if backend not in made:
                made[backend] = factory(backend)
            return made[backend]

    return get
