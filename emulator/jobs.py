"""Background jobs: dataset imports, training, hosting transitions, packaging.

Long work runs on a small pool of worker threads so that API calls return at once with an
IN_PROGRESS status, as the real service does. A job records its own outcome in the store; what a
crash or shutdown interrupts is left IN_PROGRESS there, and the recovery hooks ``create_app`` hands
to `Backend.start` finish or fail it when a backend next starts, before the server accepts requests.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 10.0


_Job = tuple[Future[Any], str, Callable[..., Any], tuple[Any, ...]]


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
        self._pending: set[Future[Any]] = set()
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._work, name=f"lookout-job-{i}", daemon=True)
                         for i in range(workers)]
        for worker in self._workers:
            worker.start()

    def submit(self, description: str, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Queue `fn(*args)`; the returned future holds its result or exception."""
        if self.stopping.is_set():
            raise RuntimeError(f"cannot start job {description}: the emulator is shutting down")
        future: Future[Any] = Future()
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)
        self._queue.put((future, description, fn, args))
        return future

    def _forget(self, future: Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)

    def _work(self) -> None:
        """A slot: take the next job and run it on a new thread, then wait for that thread."""
        while (job := self._queue.get()) is not None:
            future = job[0]
            if not future.set_running_or_notify_cancel():
                continue
            runner = threading.Thread(target=self._run, args=job, name=f"{threading.current_thread().name}-run",
                                      daemon=True)
            runner.start()
            runner.join()

    @staticmethod
    def _run(future: Future[Any], description: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            result = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - the job's own status records the failure
            log.error("job %s failed", description, exc_info=exc)
            future.set_exception(exc)
        else:
            future.set_result(result)

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
