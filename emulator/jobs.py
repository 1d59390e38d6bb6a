"""Background jobs: dataset imports, training, hosting transitions, packaging.

Long work runs on a small pool of worker threads so that API calls return at once with an
IN_PROGRESS status, as the real service does. A job records its own outcome in the store and
returns it as an `Outcome`; what a crash or shutdown interrupts is left IN_PROGRESS there, and the
recovery hooks ``create_app`` hands to `Backend.start` finish or fail it when a backend next starts,
before the server accepts requests.

Every job event is one line on this module's logger (``emulator.jobs``), in key=value form so that
an operator can grep or parse it: ``job event=resumed|started|finished kind=... subject=...``, the
finished line with ``outcome=`` and ``duration_s=``. `JobRunner.stats` counts the same events for
/metrics. A job that defers itself (a model waiting for its datasets' imports polls twice a second)
is one job to the operator: its deferred runs and the runs that continue it are logged at DEBUG and
not counted, so INFO shows one started and one finished line for it.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 10.0
# The job kinds a node's worker can be limited to (`serve --job-kinds`). Training runs on a queue of its
# own (`--max-trainings`); other kinds (console trials) run on every worker.
TRAINING = "train"
DATASET = "dataset"  # CreateDataset imports and UpdateDatasetEntries
PACKAGING = "package"
JOB_KINDS = (TRAINING, DATASET, PACKAGING)

# Job functions by name (`handler`): a queued job names its function, and the node that runs it finds
# it here, so that only functions written as jobs can be run from what the database holds.
HANDLERS: dict[str, Callable[..., Outcome]] = {}

Handler = TypeVar("Handler", bound=Callable[..., "Outcome"])


def handler(fn: Handler) -> Handler:
    """Decorator: `fn(backend, *args)` is a job function that a durable queue may run on any node, its
    `args` plain JSON values (names, numbers) rather than objects of the process that submitted it."""
    HANDLERS[handler_name(fn)] = fn
    return fn


def handler_name(fn: Callable[..., Any]) -> str:
    """The name a queued job gives its function by."""
    return f"{fn.__module__}.{fn.__qualname__}"


class Outcome(StrEnum):
    """How a job ended, as its log line and metrics name it (its resource's status says more)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the resource records why; so does a job that raised
    INTERRUPTED = "interrupted"  # the emulator is stopping: start-up recovery runs it again
    SKIPPED = "skipped"  # nothing to do: the resource is gone or no longer waits for this job
    DEFERRED = "deferred"  # not finished: the job submits itself again later, with continued=True


@dataclass(frozen=True)
class JobStats:
    """Counts since the runner started (jobs by kind): what /metrics exposes."""

    started: Counter[str]
    finished: Counter[tuple[str, Outcome]]
    running: Counter[str]
    queued: int


@dataclass(frozen=True)
class _Job:
    future: Future[Outcome]
    kind: str
    subject: str
    queued_at: float  # time.monotonic() at submission
    continued: bool  # a run that continues a deferred job
    fn: Callable[..., Outcome]
    args: tuple[Any, ...]


def event(event: str, kind: str, subject: str, level: int = logging.INFO, **fields: object) -> None:
    """One greppable key=value line per job event; values with spaces or quotes are quoted."""
    pairs = {"event": event, "kind": kind, "subject": subject, **fields}
    text = " ".join(f"{key}={_value(value)}" for key, value in pairs.items())
    log.log(level, "job %s", text)


def _value(value: object) -> str:
    text = str(value)
    if not text or any(char in text for char in ' "=\\'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


class JobLedger:
    """Counts and logs the runs of jobs, whichever runner runs them (in-process or the durable queue)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._started: Counter[str] = Counter()
        self._finished: Counter[tuple[str, Outcome]] = Counter()
        self._running: Counter[str] = Counter()

    def stats(self, queued: int) -> JobStats:
        with self.lock:
            return JobStats(started=Counter(self._started), finished=Counter(self._finished),
                            running=+self._running, queued=queued)

    def run(self, kind: str, subject: str, fn: Callable[..., Outcome], args: tuple[Any, ...], continued: bool,
            waited_s: float, started_event: str = "started") -> tuple[Outcome, BaseException | None]:
        """Run `fn(*args)` here, counted and logged; its outcome, and what it raised (a job that raises
        has FAILED: its resource's status records why)."""
        started = time.monotonic()
        with self.lock:
            if not continued:
                self._started[kind] += 1
            self._running[kind] += 1
        event(started_event, kind, subject, logging.DEBUG if continued else logging.INFO,
              waited_s=f"{waited_s:.3f}")
        error: BaseException | None = None
        try:
            outcome = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - the job's own status records the failure
            log.error("job %s %s raised", kind, subject, exc_info=exc)
            error, outcome = exc, Outcome.FAILED
        deferred = outcome == Outcome.DEFERRED
        with self.lock:
            self._running[kind] -= 1
            if not deferred:
                self._finished[kind, outcome] += 1
        event("finished", kind, subject, logging.DEBUG if deferred else logging.INFO, outcome=outcome,
              duration_s=f"{time.monotonic() - started:.3f}")
        return outcome, error


def run_on_fresh_thread(target: Callable[[], None], name: str) -> None:
    """Run `target` on a new thread and wait for it: what a job leaves in thread-local state dies with
    its thread (see `JobRunner`)."""
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    thread.join()


class JobRunner:
    """Runs jobs in the background, at most `workers` at a time, each on a thread of its own.

    A fresh thread per job rather than a reused one, because what a job leaves in thread-local
    state dies with its thread - above all the OpenMP thread pool torch attaches to every thread
    that runs a training or loads a model. libgomp makes all pools stop spinning and sleep between
    parallel regions once more OpenMP threads exist than cores; one left behind by a finished
    training made every later DetectAnomalies on a 2-core machine ~40% slower.
    Daemon threads, because a shutdown must not hang on a job that takes minutes (training): the
    job's state is in the store, and start-up recovery deals with whatever it left unfinished.
    Long jobs may poll `stopping` to end early and cleanly.
    """

    def __init__(self, workers: int) -> None:
        self.stopping = threading.Event()
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._pending: set[Future[Outcome]] = set()
        self._ledger = JobLedger()
        self._lock = threading.Lock()
        self._queued = 0
        self._workers = [threading.Thread(target=self._work, name=f"lookout-job-{i}", daemon=True)
                         for i in range(workers)]
        for worker in self._workers:
            worker.start()

    def submit(self, kind: str, subject: str, fn: Callable[..., Outcome], *args: Any, resumed: bool = False,
               continued: bool = False) -> Future[Outcome]:
        """Queue `fn(*args)`, a job of `kind` (``train``, ``dataset``, ...) on `subject` (the resource
        it works for, e.g. ``cookies/1``); the returned future holds its outcome or exception.
        `resumed`: start-up recovery submits what a stop or crash interrupted (logged as such);
        `continued`: a job that ended DEFERRED submits itself again (see the module docstring)."""
        if self.stopping.is_set():
            raise RuntimeError(f"cannot start job {kind} {subject}: the emulator is shutting down")
        job = _Job(Future(), kind, subject, time.monotonic(), continued, fn, args)
        with self._lock:
            self._pending.add(job.future)
            self._queued += 1
        job.future.add_done_callback(self._forget)
        if resumed:
            event("resumed", kind, subject)
        self._queue.put(job)
        return job.future

    def submit_later(self, delay: float, kind: str, subject: str, fn: Callable[..., Outcome], *args: Any) -> None:
        """Continue a job that ended DEFERRED: submit it again, `continued`, in `delay` seconds (unless
        the emulator is stopping by then: start-up recovery resubmits it)."""
        def again() -> None:
            with contextlib.suppress(RuntimeError):  # shutting down
                self.submit(kind, subject, fn, *args, continued=True)

        timer = threading.Timer(delay, again)
        timer.daemon = True
        timer.start()

    def stats(self) -> JobStats:
        """The job counts now (queued: submitted, not started yet)."""
        with self._lock:
            queued = self._queued
        return self._ledger.stats(queued)

    def _forget(self, future: Future[Outcome]) -> None:
        with self._lock:
            self._pending.discard(future)

    def _work(self) -> None:
        """A slot: take the next job and run it on a new thread, then wait for that thread."""
        while (job := self._queue.get()) is not None:
            with self._lock:
                self._queued -= 1
            if not job.future.set_running_or_notify_cancel():
                continue
            run_on_fresh_thread(functools.partial(self._run, job), f"{threading.current_thread().name}-run")

    def _run(self, job: _Job) -> None:
        # counted and logged before the future wakes anyone who waits for the job
        outcome, error = self._ledger.run(job.kind, job.subject, job.fn, job.args, job.continued,
                                          time.monotonic() - job.queued_at)
        if error is None:
            job.future.set_result(outcome)
        else:
            job.future.set_exception(error)

    def wait_idle(self, timeout: float | None = None) -> None:
        """Block until every job submitted so far has finished (tests)."""
        with self._lock:
            pending = list(self._pending)
        for future in pending:
            future.exception(timeout=timeout)

    def shutdown(self, grace_seconds: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Cancel jobs not started yet, and give running ones `grace_seconds` to finish."""
        self.stopping.set()
        with self._lock:
            pending = list(self._pending)
        for future in pending:
            future.cancel()  # only succeeds for jobs still queued
        for _ in self._workers:
            self._queue.put(None)
        deadline = time.monotonic() + grace_seconds
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        still_running = sum(worker.is_alive() for worker in self._workers)
        if still_running:
            log.warning("%d job(s) still running at shutdown; start-up recovery will finish or fail them",
                        still_running)
