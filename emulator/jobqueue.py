"""Jobs in a durable queue on PostgreSQL (procrastinate), for servers sharing one database.

With ``--database-url`` pointing at PostgreSQL, `JobQueue` takes the place of the in-process
`emulator.jobs.JobRunner`: a submitted job is a row in procrastinate's tables, and every server runs
a worker that takes jobs from them, so a job outlives the node that submitted it. Both runners run
the same job functions (`emulator.jobs.handler`), counted and logged alike (`emulator.jobs.JobLedger`).

Delivery is at least once. Each worker writes a heartbeat every `heartbeat_seconds`; a job whose
worker has not written one for three heartbeats is stalled (its node died or hangs), and every node
looks for stalled jobs once a heartbeat and puts them back in the queue (procrastinate's documented
``get_stalled_jobs`` + ``retry_job``), where any worker takes them over: with the default 10 s, a
job is running again within about 40 s of its node's death. A job may therefore run twice; job
functions skip what is no longer in progress, and status changes are guarded updates. A lock per
resource (``kind:subject``) keeps two runs of one resource's jobs from overlapping.

Each job kind a node can be limited to (``--job-kinds``: a GPU box trains, CPU boxes import and
package) has a queue of its own, which only the nodes taking that kind work: trainings at most
``--max-trainings`` at a time per node, the other kinds sharing ``job_workers``. Jobs of no such kind
(console trials) go to the general queue, which every node works. Jobs queued by a release before
``--job-kinds`` wait in the general queue whatever their kind: a node that does not take a job's kind
moves it to its kind's queue. A job that a shutdown interrupts is queued again.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from procrastinate import App, PsycopgConnector, SyncPsycopgConnector
from procrastinate.exceptions import ConnectorException
from procrastinate.job_context import JobContext

from emulator.jobs import (
    DATASET,
    HANDLERS,
    JOB_KINDS,
    PACKAGING,
    SHUTDOWN_GRACE_SECONDS,
    TRAINING,
    JobLedger,
    JobStats,
    Outcome,
    event,
    handler_name,
    run_on_fresh_thread,
)
from emulator.store.database import libpq_url

log = logging.getLogger(__name__)

TASK = "lookout_job"  # the one procrastinate task: it runs the job function a job names
# The queue of each kind a node's worker can be limited to; "training" and "jobs" (the general queue)
# are the names of the releases before it.
QUEUES = {TRAINING: "training", DATASET: "dataset", PACKAGING: "package"}
GENERAL_QUEUE = "jobs"
STALLED_AFTER_HEARTBEATS = 3
IDLE_POLL_SECONDS = 0.1


def _lock(kind: str, subject: str) -> str:
    """The procrastinate lock of a resource's jobs: one runs at a time."""
    return f"{kind}:{subject}"


class JobQueue:
    """`emulator.jobs.JobRunner`'s interface over procrastinate; see the module docstring."""

    def __init__(self, database_url: str, job_workers: int, max_trainings: int, heartbeat_seconds: float,
                 kinds: tuple[str, ...] = JOB_KINDS) -> None:
        self.stopping = threading.Event()
        self._kinds = kinds  # the kinds this node's worker takes
        self._conninfo = libpq_url(database_url)
        self._job_workers = job_workers
        self._max_trainings = max_trainings
        self._heartbeat = heartbeat_seconds
        self._ledger = JobLedger()
        # Requests submit from their own threads through a pool of blocking connections; the worker
        # has an asyncio app of its own on its thread.
        self._app = App(connector=SyncPsycopgConnector(conninfo=self._conninfo, min_size=1, max_size=4)).open()
        self._backend: object = None  # what job functions get first: the Backend (not imported: no cycle)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._queued = 0  # jobs waiting in the queue when `stats` last read it

    def submit(self, kind: str, subject: str, fn: Callable[..., Outcome], *args: Any, resumed: bool = False,
               continued: bool = False, delay: float = 0.0) -> None:
        """Queue `fn(backend, *args)` (`args[0]` is the backend, the rest JSON values; `fn` a `handler`).
        `resumed` (start-up recovery found the resource IN_PROGRESS): queued only when the queue has
        no job for the resource waiting or running, as after an upgrade from the in-process runner;
        otherwise the queue already is its recovery (a stalled job is taken over, not resubmitted)."""
        if self.stopping.is_set():
            raise RuntimeError(f"cannot start job {kind} {subject}: the emulator is shutting down")
        name = handler_name(fn)
        if HANDLERS.get(name) is not fn:
            raise TypeError(f"{name} is not a job handler (emulator.jobs.handler)")
        if resumed:
            if any(self._app.job_manager.list_jobs(task=TASK, lock=_lock(kind, subject), status=status)
                   for status in ("todo", "doing")):
                return
            event("resumed", kind, subject)
        self._defer(delay, kind=kind, subject=subject, handler=name, args=list(args[1:]), continued=continued)

    def submit_later(self, delay: float, kind: str, subject: str, fn: Callable[..., Outcome], *args: Any) -> None:
        """Continue a job that ended DEFERRED: queued now, to run in `delay` seconds, so that the job is
        in the queue before the run that defers it ends (a node that dies meanwhile loses nothing)."""
        self.submit(kind, subject, fn, *args, continued=True, delay=delay)

    def _defer(self, delay: float = 0.0, **job: Any) -> None:
        self._app.configure_task(
            TASK, lock=_lock(job["kind"], job["subject"]),
            queue=QUEUES.get(job["kind"], GENERAL_QUEUE),
            schedule_in={"seconds": delay} if delay else None,
        ).defer(**job, queued_at=time.time() + delay)

    def start_worker(self, backend: object) -> None:
        """Start taking jobs from the queue, for `backend` (after its start-up, before requests)."""
        self._backend = backend
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run_worker, args=(ready,), name="lookout-queue", daemon=True)
        self._thread.start()
        ready.wait()

    def _run_worker(self, ready: threading.Event) -> None:
        with contextlib.suppress(asyncio.CancelledError):  # how `shutdown` stops it
            asyncio.run(self._work(ready))

    async def _work(self, ready: threading.Event) -> None:
        """The workers of this node's queues and the stalled-job watcher, until `shutdown` cancels them."""
        self._loop = asyncio.get_running_loop()
        self._main = asyncio.current_task()
        app = App(connector=PsycopgConnector(conninfo=self._conninfo, min_size=1, max_size=6))
        app.task(name=TASK, pass_context=True)(self._perform)
        options: dict[str, Any] = dict(
            install_signal_handlers=False, update_heartbeat_interval=self._heartbeat,
            stalled_worker_timeout=STALLED_AFTER_HEARTBEATS * self._heartbeat,
            shutdown_graceful_timeout=SHUTDOWN_GRACE_SECONDS)
        others = [QUEUES[kind] for kind in self._kinds if kind != TRAINING]
        ready.set()
        async with app.open_async():
            workers = [app.run_worker_async(queues=[*others, GENERAL_QUEUE], concurrency=self._job_workers,
                                            name="lookout-jobs", **options)]
            if TRAINING in self._kinds:
                workers.append(app.run_worker_async(queues=[QUEUES[TRAINING]], concurrency=self._max_trainings,
                                                    name="lookout-training", **options))
            await asyncio.gather(*workers, self._retry_stalled(app))

    async def _retry_stalled(self, app: App) -> None:
        """Put the jobs of dead workers back in the queue, once a heartbeat."""
        while True:
            await asyncio.sleep(self._heartbeat)
            try:
                stalled = await app.job_manager.get_stalled_jobs(
                    task_name=TASK, seconds_since_heartbeat=STALLED_AFTER_HEARTBEATS * self._heartbeat)
                for job in stalled:
                    log.warning("job %s of a worker without heartbeat queued again: %s", job.id, job.task_kwargs)
                    await app.job_manager.retry_job(job)
            except Exception:  # noqa: BLE001 - the database is away for a moment: look again next time
                log.exception("looking for stalled jobs failed")

    def _perform(self, context: JobContext, kind: str, subject: str, handler: str, args: list[Any],
                 continued: bool, queued_at: float) -> None:
        """The procrastinate task: run the named job function on a fresh thread (see `JobRunner`)."""
        fn = HANDLERS.get(handler)
        if fn is None:  # written by a release that has this job, which this one lacks
            log.error("job kind=%s subject=%s names an unknown job function %s; dropped", kind, subject, handler)
            return
        if kind in JOB_KINDS and kind not in self._kinds:  # queued before --job-kinds: to its kind's queue
            self._defer(kind=kind, subject=subject, handler=handler, args=args, continued=continued)
            return
        backend = self._backend
        taken_over = context.job.attempts > 0
        outcome: list[Outcome] = []

        def run() -> None:
            outcome.append(self._ledger.run(kind, subject, fn, (backend, *args), continued and not taken_over,
                                            max(0.0, time.time() - queued_at),
                                            "taken_over" if taken_over else "started")[0])

        run_on_fresh_thread(run, f"lookout-job-{kind}")
        if outcome == [Outcome.INTERRUPTED]:  # this node stops: the job goes back to the queue for another
            self._defer(kind=kind, subject=subject, handler=handler, args=args, continued=continued)

    def stats(self) -> JobStats:
        """The job counts of this node (queued: waiting in the queue, for any node; while the database
        can't be reached, the last count read, so that /metrics still answers)."""
        try:
            self._queued = len(self._app.job_manager.list_jobs(task=TASK, status="todo"))
        except ConnectorException as exc:
            log.warning("the job queue's length could not be read: %s", exc)
        return self._ledger.stats(self._queued)

    def wait_idle(self, timeout: float | None = None) -> None:
        """Block until the queue holds no job waiting or running (tests)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while any(self._app.job_manager.list_jobs(task=TASK, status=status) for status in ("todo", "doing")):
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("jobs still queued or running")
            time.sleep(IDLE_POLL_SECONDS)

    def shutdown(self, grace_seconds: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Stop taking jobs; running ones get `grace_seconds` to finish (or to queue themselves again)."""
        self.stopping.set()
        if self._loop is not None and self._main is not None:
            self._loop.call_soon_threadsafe(self._main.cancel)
        if self._thread is not None:
            self._thread.join(grace_seconds + 1)
            if self._thread.is_alive():
                log.warning("the job queue's worker did not stop in time; its jobs go back to the queue when "
                            "its heartbeat stops")
        self._app.close()
