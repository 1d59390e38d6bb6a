"""Background jobs: dataset imports, training, hosting transitions, packaging.

Long work runs on a small thread pool so that API calls return at once with an IN_PROGRESS status,
as the real service does. Service modules register a recovery hook that runs at start-up, before
the server accepts requests, to finish or fail work a crash interrupted.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emulator.backend import Backend

log = logging.getLogger(__name__)

RecoveryHook = Callable[["Backend"], None]
RECOVERY_HOOKS: list[RecoveryHook] = []


def on_startup(hook: RecoveryHook) -> RecoveryHook:
    """Register `hook` to run once when a backend starts (decorator)."""
    RECOVERY_HOOKS.append(hook)
    return hook


class JobRunner:
    """A bounded pool for long work; failures are logged (the job itself records its status)."""

    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lookout-job")
        self._pending: set[Future[Any]] = set()
        self._lock = threading.Lock()

    def submit(self, description: str, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future = self._pool.submit(fn, *args)
        with self._lock:
            self._pending.add(future)

        def done(f: Future[Any]) -> None:
            with self._lock:
                self._pending.discard(f)
            if f.exception() is not None:
                log.error("job %s failed", description, exc_info=f.exception())

        future.add_done_callback(done)
        return future

    def wait_idle(self, timeout: float | None = None) -> None:
        """Block until every submitted job has finished (tests and clean shutdown)."""
        with self._lock:
            pending = list(self._pending)
        for future in pending:
            future.exception(timeout=timeout)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)
