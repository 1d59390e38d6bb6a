"""Model state across restarts: hosted models are hosted again, interrupted transitions are settled."""
from __future__ import annotations

import shutil
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

from tests.api.core_support import ServerProcess
from tests.api.models_support import ModelKit, new_kit, trained

CLI = [sys.executable, "-m", "emulator.cli"]


def test_kill_9_during_training_fails_the_model_with_a_message(tmp_path: Path) -> None:
    server = ServerProcess(CLI, "--data-dir", str(tmp_path))
    kit = new_kit(server.client("lookoutvision"), server.client("s3"), "interrupted")
    kit.stage("train", normals=20, anomalies=10, size=(64, 64))
    version = kit.create_model()["ModelVersion"]
    server.process.kill()  # training takes seconds: the process dies in the middle of it
    assert server.process.wait(30) == -signal.SIGKILL

    server = ServerProcess(CLI, "--data-dir", str(tmp_path))
    kit = ModelKit(server.client("lookoutvision"), server.client("s3"), "interrupted")
    described = kit.model(version)
    assert described["Status"] == "TRAINING_FAILED"
    assert "stopped while the model was training" in described["StatusMessage"]
    assert kit.create_model()["ModelVersion"] == str(int(version) + 1)  # versions go on counting
    assert server.stop(signal.SIGINT) == 0


def _snapshot(emulator: Any, target: Path, projects: list[str]) -> None:
    """The server's durable state as a crash would leave it: the database and the model files."""
    target.mkdir()
    with sqlite3.connect(emulator.settings.db_path) as source, sqlite3.connect(target / "metadata.sqlite3") as copy:
        source.backup(copy)
    for project in projects:
        shutil.copytree(emulator.settings.models_dir / project, target / "models" / project)


def test_hosted_models_are_hosted_again_after_a_crash(emulator: Any, lookout: Any, s3: Any, tmp_path: Path) -> None:
    hosted, stopping = trained("classification", lookout, s3), trained("segmentation", lookout, s3)
    hosted.kit.host("1")
    try:
        _snapshot(emulator, tmp_path / "data", [hosted.kit.project, stopping.kit.project])
    finally:
        lookout.stop_model(ProjectName=hosted.kit.project, ModelVersion="1")
        hosted.kit.wait_model("1")
    with sqlite3.connect(tmp_path / "data" / "metadata.sqlite3") as db:  # a StopModel the crash interrupted
        db.execute("UPDATE models SET status='STOPPING_HOSTING' WHERE project=?", (stopping.kit.project,))

    server = ServerProcess(CLI, "--data-dir", str(tmp_path / "data"))
    lookout_after = server.client("lookoutvision")
    kit = ModelKit(lookout_after, server.client("s3"), hosted.kit.project)
    described = kit.model("1")
    assert described["Status"] == "HOSTED" and described["MinInferenceUnits"] == 1
    assert kit.detect("1", hosted.normals[0])["IsAnomalous"] is False  # waits for the model to load
    assert kit.detect("1", hosted.anomalies[0][0])["IsAnomalous"] is True
    after_stop = ModelKit(lookout_after, server.client("s3"), stopping.kit.project).model("1")
    assert after_stop["Status"] == "TRAINED" and "MinInferenceUnits" not in after_stop
    assert server.stop(signal.SIGINT) == 0
