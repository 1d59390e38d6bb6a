"""The background job runner (emulator.jobs): bounded concurrency, a thread of its own per job."""
from __future__ import annotations

import threading

from emulator.jobs import JobRunner


def test_each_job_runs_on_a_thread_that_ends_with_it() -> None:
    """Thread-local state (torch's OpenMP pool above all) must not outlive the job that made it."""
    runner = JobRunner(workers=1)
    local = threading.local()

    def job(mark: str) -> tuple[threading.Thread, str | None]:
        seen = getattr(local, "mark", None)
        local.mark = mark
        return threading.current_thread(), seen

    try:
        first, seen_first = runner.submit("first", job, "a").result(timeout=10)
        second, seen_second = runner.submit("second", job, "b").result(timeout=10)
        assert (seen_first, seen_second) == (None, None)
        assert first is not second
        first.join(timeout=10)
        assert not first.is_alive()
    finally:
        runner.shutdown()


def test_workers_bound_how_many_jobs_run_at_once() -> None:
    runner = JobRunner(workers=2)
    lock, running, peak = threading.Lock(), [0], [0]
    release = threading.Event()

    def job() -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        release.wait(10)
        with lock:
            running[0] -= 1

    try:
        futures = [runner.submit(f"job {i}", job) for i in range(5)]
        threading.Timer(0.3, release.set).start()
        for future in futures:
            future.result(timeout=20)
        assert peak[0] == 2
    finally:
        runner.shutdown()


def test_a_failing_job_reports_its_exception() -> None:
    runner = JobRunner(workers=1)

    def job() -> None:
        raise ValueError("bad input")

    try:
        assert isinstance(runner.submit("failing", job).exception(timeout=10), ValueError)
        assert runner.submit("next", lambda: 42).result(timeout=10) == 42
    finally:
        runner.shutdown()
