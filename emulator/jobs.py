"""Background jobs: dataset imports, training, hosting transitions, packaging.

Long work runs on a small pool of worker threads so that API calls return at once with an
IN_PROGRESS status, as the real service does. A job records its own outcome in the store and
returns it as an `Outcome`; what a crash or shutdown interrupts is left IN_PROGRESS there, and the
recovery hooks ``create_app`` hands to `Backend.start` finish or fail it when a backend next starts,
before the server accepts requests.

Every job event is one line on this module's logger (``emulator.jobs``), in key=value form so that
an operator can grep or parse it: ``job event=resumed|started|finished kind=... subject=...``, the
finished line with ``outcome=`` and ``duration_s=``. `JobRunner.stats` counts the same events for
/metrics.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 10.0


class Outcome(StrEnum):
    """How a job ended, as its log line and metrics name it (its resource's status says more)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the resource records why; so does a job that raised
    INTERRUPTED = "interrupted"  # the emulator is stopping: start-up recovery runs it again
    SKIPPED = "skipped"  # nothing to do: the resource is gone or no longer waits for this job
    DEFERRED = "deferred"  # submitted again later (a model waiting for its datasets' jobs)


@dataclass(frozen=True)
class JobStats:
    """Counts since the runner started (jobs by kind): what /metrics exposes."""

    started: Counter[str]
    finished: Counter[tuple[str, Outcome]]
    running: Counter[str]
    queued: int


_Job = tuple[Future[Outcome], str, str, float, Callable[..., Outcome], tuple[Any, ...]]


def _event(event: str, kind: str, subject: str, **fields: object) -> None:
    """One greppable key=value line per job event; values with spaces or quotes are quoted."""
    pairs = {"event": event, "kind": kind, "subject": subject, **fields}
    text = " ".join(f"{key}={_value(value)}" for key, value in pairs.items())
    log.info("job %s", text)


def _value(value: object) -> str:
    text = str(value)
    if not text or any(char in text for char in ' "=\\'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


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
        self._lock = threading.Lock()
        self._started: Counter[str] = Counter()
        self._finished: Counter[tuple[str, Outcome]] = Counter()
        self._running: Counter[str] = Counter()
        self._queued = 0
        self._workers = [threading.Thread(target=self._work, name=f"lookout-job-{i}", daemon=True)
                         for i in range(workers)]
        for worker in self._workers:
            worker.start()

    def submit(self, kind: str, subject: str, fn: Callable[..., Outcome], *args: Any,
               resumed: bool = False) -> Future[Outcome]:
        """Queue `fn(*args)`, a job of `kind` (``train``, ``dataset``, ...) on `subject` (the resource
        it works for, e.g. ``cookies/1``); the returned future holds its outcome or exception.
        `resumed`: start-up recovery submits what a stop or crash interrupted (logged as such)."""
        if self.stopping.is_set():
            raise RuntimeError(f"cannot start job {kind} {subject}: the emulator is shutting down")
        future: Future[Outcome] = Future()
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)
        if resumed:
            _event("resumed", kind, subject)
        with self._lock:
            self._queued += 1
        self._queue.put((future, kind, subject, time.monotonic(), fn, args))
        return future

    def stats(self) -> JobStats:
        """The job counts now (queued: submitted, not started yet)."""
        with self._lock:
            return JobStats(started=Counter(self._started), finished=Counter(self._finished),
                            running=+self._running, queued=self._queued)

    def _forget(self, future: Future[Outcome]) -> None:
        with self._lock:
            self._pending.discard(future)

    def _work(self) -> None:
        """A slot: take the next job and run it on a new thread, then wait for that thread."""
        while (job := self._queue.get()) is not None:
            with self._lock:
                self._queued -= 1
            future = job[0]
            if not future.set_running_or_notify_cancel():
                continue
            runner = threading.Thread(target=self._run, args=job, name=f"{threading.current_thread().name}-run",
                                      daemon=True)
            runner.start()
            runner.join()

    def _run(self, future: Future[Outcome], kind: str, subject: str, queued_at: float, fn: Callable[..., Outcome],
             args: tuple[Any, ...]) -> None:
        started = time.monotonic()
        with self._lock:
            self._started[kind] += 1
            self._running[kind] += 1
        _event("started", kind, subject, waited_s=f"{started - queued_at:.3f}")
        error: BaseException | None = None
        try:
            outcome = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - the job's own status records the failure
            log.error("job %s %s raised", kind, subject, exc_info=exc)
            error, outcome = exc, Outcome.FAILED
        with self._lock:  # counted and logged before the future wakes anyone who waits for the job
            self._running[kind] -= 1
            self._finished[kind, outcome] += 1
        _event("finished", kind, subject, outcome=outcome, duration_s=f"{time.monotonic() - started:.3f}")
        if error is None:
            future.set_result(outcome)
        else:
            future.set_exception(error)

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
