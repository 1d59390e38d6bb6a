"""Trial detections survive a restart: one left IN_PROGRESS by a crash runs again when the console
starts, and ends with a status the user can read (here: its model is gone)."""
from __future__ import annotations

import time

from emulator.testing import LocalEmulator


def test_interrupted_trial_runs_again_after_a_restart(tmp_path):
    with LocalEmulator(data_dir=tmp_path) as first:
        first.client().create_project(ProjectName="crashed")
        with first.backend.store.transaction() as db:  # the state a crash mid-trial leaves behind
            db.execute("INSERT INTO trial_detections(project, name, model_version, source, status, created_at)"
                       " VALUES ('crashed', 'batch', 1, 'upload', 'IN_PROGRESS', 0)")
            db.execute("INSERT INTO trial_images(project, trial, source_ref) VALUES ('crashed', 'batch', 's3://b/k.png')")
    with LocalEmulator(data_dir=tmp_path) as second:
        deadline = time.monotonic() + 30
        while (row := second.backend.store.query_one(
                "SELECT status, status_message FROM trial_detections WHERE name='batch'"))["status"] == "IN_PROGRESS":
            assert time.monotonic() < deadline, "the interrupted trial detection was not resumed"
            time.sleep(0.05)
    assert row["status"] == "FAILED"
    assert "model" in row["status_message"].lower() and "1" in row["status_message"], row["status_message"]
