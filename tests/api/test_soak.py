"""Soak: 1,000 background jobs and 50 small trainings on one server; file descriptors and memory
must level off (each job once leaked two descriptors, each training ~10 MB). The measured figures
are printed (run with -s to see them) and quoted in README.md's Reliability section."""
from __future__ import annotations

import json
import os
import time

import numpy as np
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


FINETUNED_LOADS = 20
FINETUNED_TRAININGS = 10


def test_fine_tuned_models_load_and_train_without_growing(tmp_path):
    """A fine-tuned model loaded and unloaded 20 times, and 10 trainings that fine-tune, on one server.

    Each load once kept its fine-tuned networks for good (torch held every traced and frozen copy:
    ~20 MB per StartModel on cookies-sized models), and so did every fine-tuning training (its fold
    networks were traced to score their held-out images). The bound: after two warm-up rounds, the
    20 loads may grow the server by at most 3x the size of one model's fine-tuned networks, and the
    10 trainings by at most 4x it (plus a fixed 25 MB for allocator noise) -- less than one load's or
    one training's networks kept in every seventh round (loads) or every third (trainings), where the
    leak kept all of them in every round."""
    from emulator.services.lookups import engine_dir
    from engine import fit
    from tests.api.datasets_support import labelled
    from tests.api.models_support import encode
    from tests.engine.engine_synth import SIZE, fast_options, make_items
    from tests.engine.engine_synth import texture as synthetic_texture

    rng = np.random.default_rng(3)
    with LocalEmulator(data_dir=tmp_path / "data", finetune_epochs=1) as emu:
        kit = new_kit(emu.client("lookoutvision"), emu.client("s3"), "soak-finetuned")
        # Normal textures labelled "anomaly" half the time: nothing separates the labels, so every
        # training goes on to fine-tune (1 epoch per fold network).
        lines = [labelled(kit.put(f"train/{i}.png", encode(synthetic_texture(rng))), "anomaly" if i % 2 else "normal")
                 for i in range(20)]
        kit.create("train", lines)
        kit.stage("test", normals=10, anomalies=10, size=(SIZE, SIZE), seed=900)

        def training() -> str:
            version = kit.create_model()["ModelVersion"]
            described = kit.wait_model(version, timeout=600)
            assert described["Status"] == "TRAINED", described
            return version

        # The hosted model: a trained version whose engine artifact is replaced by a fine-tuned one.
        version = training()
        train, _ = make_items(10, 8, seed=11)
        tuned = fit(train, options=fast_options(candidates=["finetuned"]))
        assert tuned.candidate == "finetuned"
        tuned.save(engine_dir(emu.backend, kit.project, int(version)))
        size_mb = sum(t.numel() * t.element_size() for name, t in tuned.tensors.items()
                      if name.startswith("finetuned.")) / 2**20
        del tuned
        image = encode(synthetic_texture(rng))

        def cycle() -> None:
            kit.host(version)
            kit.detect(version, image)
            kit.lookout.stop_model(ProjectName=kit.project, ModelVersion=version)
            assert kit.wait_model(version)["Status"] == "TRAINED"

        for _ in range(2):  # warm-up: the shared traces, pools and caches reach their working size
            cycle()
        samples = {"loads start": rss_mb()}
        for number in range(1, FINETUNED_LOADS + 1):
            cycle()
            if number in (FINETUNED_LOADS // 2, FINETUNED_LOADS):
                samples[f"loads {number}"] = rss_mb()
        training()
        samples["trainings start"] = rss_mb()
        for number in range(1, FINETUNED_TRAININGS + 1):
            training()
            if number in (FINETUNED_TRAININGS // 2, FINETUNED_TRAININGS):
                samples[f"trainings {number}"] = rss_mb()
        print("\nsoak (fine-tuned):", json.dumps({"networks MB": round(size_mb, 1),
                                                  "RSS MB": {k: round(v) for k, v in samples.items()}}))
    loads = samples[f"loads {FINETUNED_LOADS}"] - samples["loads start"]
    trainings = samples[f"trainings {FINETUNED_TRAININGS}"] - samples["trainings start"]
    assert loads < 3 * size_mb + 25, f"{FINETUNED_LOADS} loads grew the server by {loads:.0f} MB: {samples}"
    assert trainings < 4 * size_mb + 25, f"{FINETUNED_TRAININGS} trainings grew it by {trainings:.0f} MB: {samples}"
