"""Console trial detections on a model that is only trained: hosted for the trials, and stopped when
the last trial using it ends - never under a trial still running."""
from __future__ import annotations

import time
from typing import Any

from emulator.console.trial_runs import create_trial, get_trial, trial_images
from emulator.store.records import Trial
from tests.api.models_support import encode, texture, trained


def _finished(backend: Any, project: str, name: str, timeout: float = 120) -> Trial:
    deadline = time.monotonic() + timeout
    while (trial := get_trial(backend, project, name)).status == "IN_PROGRESS":
        assert time.monotonic() < deadline, f"trial {name} did not finish"
        time.sleep(0.05)
    return trial


def test_a_short_trial_does_not_stop_the_model_under_a_long_one(lookout: Any, s3: Any, emulator: Any) -> None:
    model = trained("classification", lookout, s3)
    kit, backend = model.kit, emulator.backend
    assert kit.wait_model("1")["Status"] == "TRAINED"
    short = [kit.put("trials/short-0.png", model.normals[0])]
    long = [kit.put(f"trials/long-{i}.png", encode(texture(7000 + i))) for i in range(40)]
    create_trial(backend, kit.project, "short", "1", "upload", short)  # it starts the model...
    deadline = time.monotonic() + 30
    while kit.lookout.describe_model(ProjectName=kit.project, ModelVersion="1")["ModelDescription"][
            "Status"] == "TRAINED":  # (a trial may start on a model that is still being started)
        assert time.monotonic() < deadline, "the short trial did not start the model"
        time.sleep(0.01)
    create_trial(backend, kit.project, "long", "1", "upload", long)  # ...and ends long before this one
    for name, refs in (("short", short), ("long", long)):
        trial = _finished(backend, kit.project, name)
        assert trial.status == "COMPLETED", trial
        images = trial_images(backend, kit.project, name)
        assert len(images) == len(refs) and all(i.error is None and i.is_anomalous is not None for i in images)
    assert kit.wait_model("1")["Status"] == "TRAINED"  # the last trial stopped what the trials started
