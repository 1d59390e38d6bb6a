"""Trial detections survive a restart: one left IN_PROGRESS by a crash runs again when the console
starts, and ends with a status the user can read (here: its model is gone)."""
from __future__ import annotations

import time

from emulator.store import schema
from emulator.testing import LocalEmulator


def test_interrupted_trial_runs_again_after_a_restart(tmp_path):
    with LocalEmulator(data_dir=tmp_path) as first:
        first.client().create_project(ProjectName="crashed")
        with first.backend.store.transaction() as db:  # the state a crash mid-trial leaves behind
            db.execute(schema.trial_detections.insert().values(project="crashed", name="batch", model_version=1,
                                                               source="upload", status="IN_PROGRESS", created_at=0))
            db.execute(schema.trial_images.insert().values(project="crashed", trial="batch", source_ref="s3://b/k.png"))
    with LocalEmulator(data_dir=tmp_path) as second:
        deadline = time.monotonic() + 30
        while (trial := second.backend.store.trials.get("crashed", "batch")).status == "IN_PROGRESS":
            assert time.monotonic() < deadline, "the interrupted trial detection was not resumed"
            time.sleep(0.05)
    assert trial.status == "FAILED"
    message = trial.status_message or ""
    assert "model" in message.lower() and "1" in message, message
