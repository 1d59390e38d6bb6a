"""Soak: 1,000 background jobs and 50 small trainings on one server; file descriptors and memory
must level off (each job once leaked two descriptors, each training ~10 MB). The measured figures
are printed (run with -s to see them) and quoted in README.md's Reliability section."""
from __future__ import annotations

import json
import os
import time

import pytest

from emulator.testing import LocalEmulator
from tests.api.models_support import new_kit

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to measure the process")]

JOBS = 1000
TRAININGS = 50


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_fds_and_memory_level_off(tmp_path):
    with LocalEmulator(data_dir=tmp_path / "data") as emu:
        kit = new_kit(emu.client("lookoutvision"), emu.client("s3"), "soak")
        # Separate training and test datasets: the smallest training set LFV accepts (10 normal images).
        kit.stage("train", normals=10, anomalies=0, size=(64, 64))
        kit.stage("test", normals=10, anomalies=10, size=(64, 64), seed=500)
        line = kit.entries()[0]

        def job() -> None:  # one UpdateDatasetEntries: one background job
            kit.update([line])

        def training() -> None:
            version = kit.create_model()["ModelVersion"]
            assert kit.wait_model(version)["Status"] == "TRAINED"
            kit.lookout.delete_model(ProjectName=kit.project, ModelVersion=version)

        for _ in range(20):
            job()
        training()  # warm-up: pools, caches and the traced backbone reach their working size
        samples = {"start": (fds(), rss_mb())}
        started = time.monotonic()
        for number in range(1, JOBS + 1):
            job()
            if number in (JOBS // 2, JOBS):
                samples[f"jobs {number}"] = (fds(), rss_mb())
        jobs_seconds = time.monotonic() - started
        for number in range(1, TRAININGS + 1):
            training()
            if number in (TRAININGS // 2, TRAININGS):
                samples[f"trainings {number}"] = (fds(), rss_mb())
        print("\nsoak:", json.dumps({"samples (fds, RSS MB)": samples, "jobs_seconds": round(jobs_seconds, 1),
                                     "total_seconds": round(time.monotonic() - started, 1)}))
    start_fds = samples["start"][0]
    for name, (count, _) in samples.items():
        assert count <= start_fds + 5, f"file descriptors grew at {name}: {samples}"
    half_jobs, all_jobs = samples[f"jobs {JOBS // 2}"][1], samples[f"jobs {JOBS}"][1]
    half_trainings, all_trainings = samples[f"trainings {TRAININGS // 2}"][1], samples[f"trainings {TRAININGS}"][1]
    assert all_jobs - half_jobs < 25, f"memory still grows over the jobs: {samples}"
    assert all_trainings - half_trainings < 40, f"memory still grows over the trainings: {samples}"
