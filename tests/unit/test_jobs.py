"""The background job runner (emulator.jobs): bounded concurrency, a thread of its own per job."""
from __future__ import annotations

import logging
import threading
import time

import pytest

from emulator.jobs import JobRunner, Outcome


def test_each_job_runs_on_a_thread_that_ends_with_it() -> None:
    """Thread-local state (torch's OpenMP pool above all) must not outlive the job that made it."""
    runner = JobRunner(workers=1)
    local = threading.local()

    def job(mark: str) -> tuple[threading.Thread, str | None]:
        seen = getattr(local, "mark", None)
        local.mark = mark
        return threading.current_thread(), seen

    try:
        first, seen_first = runner.submit("test", "first", job, "a").result(timeout=10)
        second, seen_second = runner.submit("test", "second", job, "b").result(timeout=10)
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
        futures = [runner.submit("test", f"job-{i}", job) for i in range(5)]
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
        assert isinstance(runner.submit("test", "failing", job).exception(timeout=10), ValueError)
        assert runner.submit("test", "next", lambda: 42).result(timeout=10) == 42
    finally:
        runner.shutdown()


def test_stats_count_jobs_by_kind_and_outcome_and_a_raising_job_as_failed() -> None:
    runner = JobRunner(workers=1)
    release = threading.Event()

    def blocker() -> Outcome:
        release.wait(10)
        return Outcome.SUCCEEDED

    def raising() -> Outcome:
        raise ValueError("a bug")

    try:
        blocked = runner.submit("train", "p/1", blocker)
        queued = [runner.submit("dataset", "p/train", lambda: Outcome.SKIPPED),
                  runner.submit("dataset", "p/test", raising)]
        deadline = time.monotonic() + 10
        while runner.stats().running["train"] != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert (runner.stats().running, runner.stats().queued) == ({"train": 1}, 2)
        release.set()
        for future in (blocked, *queued):
            future.exception(timeout=10)
        stats = runner.stats()
        assert (stats.started, stats.running, stats.queued) == ({"train": 1, "dataset": 2}, {}, 0)
        assert stats.finished == {("train", Outcome.SUCCEEDED): 1, ("dataset", Outcome.SKIPPED): 1,
                                  ("dataset", Outcome.FAILED): 1}
    finally:
        release.set()
        runner.shutdown()


def test_a_deferred_job_and_its_continuation_count_and_log_as_one_job(caplog: pytest.LogCaptureFixture) -> None:
    runner = JobRunner(workers=1)
    try:
        with caplog.at_level(logging.INFO, logger="emulator.jobs"):
            runner.submit("train", "p/2", lambda: Outcome.DEFERRED).result(timeout=10)
            runner.submit("train", "p/2", lambda: Outcome.DEFERRED, continued=True).result(timeout=10)
            runner.submit("train", "p/2", lambda: Outcome.SUCCEEDED, continued=True).result(timeout=10)
        stats = runner.stats()
        assert (stats.started, stats.finished) == ({"train": 1}, {("train", Outcome.SUCCEEDED): 1})
        lines = [record.getMessage() for record in caplog.records]
        assert [line.split(" waited_s=")[0].split(" duration_s=")[0] for line in lines] == [
            "job event=started kind=train subject=p/2", "job event=finished kind=train subject=p/2 outcome=succeeded"]
    finally:
        runner.shutdown()
