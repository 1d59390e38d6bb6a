"""Model state across restarts: hosted models are hosted again, interrupted transitions are settled."""
from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from tests.api.core_support import ServerProcess, sqlite_file_only
from tests.api.models_support import OUTPUT_BUCKET, ModelKit, new_kit, trained

CLI = [sys.executable, "-m", "emulator.cli"]


def test_trainings_and_packaging_cut_off_by_kill_9_or_ctrl_c_resume_at_start(tmp_path: Path) -> None:
    server = ServerProcess(CLI, "--data-dir", str(tmp_path))
    kit = new_kit(server.client("lookoutvision"), server.client("s3"), "interrupted")
    kit.stage("train", normals=20, anomalies=10, size=(64, 64))
    kit.create_model()
    assert kit.wait_model("1")["Status"] == "TRAINED"
    # Two trainings occupy both job workers, so the packaging job is still waiting when the process dies.
    versions = [kit.create_model()["ModelVersion"] for _ in range(2)]
    package = {"Greengrass": {"ComponentName": "interrupted-component",
                              "TargetPlatform": {"Os": "LINUX", "Arch": "X86_64"},
                              "S3OutputLocation": {"Bucket": OUTPUT_BUCKET, "Prefix": "packages"}}}
    job = kit.lookout.start_model_packaging_job(ProjectName=kit.project, ModelVersion="1",
                                                Configuration=package)["JobName"]
    assert [kit.model(v)["Status"] for v in versions] == ["TRAINING", "TRAINING"]
    assert _packaging_job(kit, job)["Status"] in ("CREATED", "RUNNING")
    child = server.training_process()
    server.process.kill()  # SIGKILL, in the middle of both trainings
    assert server.process.wait(30) == -signal.SIGKILL
    assert_ends(child)  # no training goes on without its server

    server = ServerProcess(CLI, "--data-dir", str(tmp_path))
    kit = ModelKit(server.client("lookoutvision"), server.client("s3"), "interrupted")
    assert [kit.model(v)["StatusMessage"] for v in versions] == ["Training in progress."] * 2  # started again
    for version in versions:
        described = kit.wait_model(version)
        assert described["Status"] == "TRAINED", described["StatusMessage"]
        assert set(described["Performance"]) == {"F1Score", "Recall", "Precision"}
        kit.s3.head_object(**described["EvaluationResult"])  # the resumed run wrote its evaluation too
    deadline = time.monotonic() + 120
    while (packaged := _packaging_job(kit, job))["Status"] in ("CREATED", "RUNNING"):
        assert time.monotonic() < deadline, packaged
        time.sleep(0.1)
    assert packaged["Status"] == "SUCCEEDED", packaged["StatusMessage"]
    assert kit.create_model()["ModelVersion"] == "4"  # versions go on counting
    server.stop_cleanly(signal.SIGINT)  # Ctrl-C: a clean stop ends the training job early, not the model

    server = ServerProcess(CLI, "--data-dir", str(tmp_path))
    kit = ModelKit(server.client("lookoutvision"), server.client("s3"), "interrupted")
    assert kit.model("4")["Status"] == "TRAINING"
    assert kit.wait_model("4")["Status"] == "TRAINED"
    server.stop_cleanly(signal.SIGINT)


def test_a_training_whose_process_is_killed_fails_alone(tmp_path: Path) -> None:
    """The kernel's OOM killer sends SIGKILL to the biggest process: a training's child. Only that
    training fails, saying so; the server goes on answering and training."""
    server = ServerProcess(CLI, "--data-dir", str(tmp_path))
    try:
        kit = new_kit(server.client("lookoutvision"), server.client("s3"), "oom")
        kit.stage("train", normals=40, anomalies=20)
        version = kit.create_model()["ModelVersion"]
        os.kill(server.training_process(), signal.SIGKILL)
        described = kit.wait_model(version)
        assert described["Status"] == "TRAINING_FAILED"
        assert described["StatusMessage"].startswith(
            "Training failed: the training process was killed (SIGKILL), most likely because the node ran out of "
            "memory; "), described["StatusMessage"]
        assert [p["ProjectName"] for p in kit.lookout.list_projects()["Projects"]] == ["oom"]
        assert kit.wait_model(kit.create_model()["ModelVersion"])["Status"] == "TRAINED"
        kit.create_model()
        child = server.training_process()
    finally:
        server.stop_cleanly(signal.SIGTERM)
    assert_ends(child)  # a shutdown stops the training it interrupts


def test_ctrl_c_in_a_terminal_leaves_the_training_to_recovery(tmp_path: Path) -> None:
    """Ctrl-C signals the server's whole process group, the training's child too: the training is
    interrupted (trained again at the next start), not failed."""
    server = ServerProcess(CLI, "--data-dir", str(tmp_path), own_group=True)
    kit = new_kit(server.client("lookoutvision"), server.client("s3"), "ctrl-c")
    kit.stage("train", normals=40, anomalies=20)
    version = kit.create_model()["ModelVersion"]
    child = server.training_process()
    os.killpg(server.process.pid, signal.SIGINT)
    assert server.process.wait(60) == 0, server.output
    assert_ends(child)
    assert "event=finished kind=train subject=ctrl-c/1 outcome=interrupted" in server.output, server.output

    server = ServerProcess(CLI, "--data-dir", str(tmp_path))
    kit = ModelKit(server.client("lookoutvision"), server.client("s3"), "ctrl-c")
    assert kit.wait_model(version)["Status"] == "TRAINED"
    server.stop_cleanly(signal.SIGTERM)


def assert_ends(pid: int, timeout: float = 10) -> None:
    """Wait for process `pid` to be gone (or a zombie nobody reaps: it runs no more)."""
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and "State:\tZ" not in _status(pid):
        assert time.monotonic() < deadline, f"process {pid} still runs"
        time.sleep(0.05)


def _status(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return ""


def _packaging_job(kit: ModelKit, job: str) -> dict[str, Any]:
    return kit.lookout.describe_model_packaging_job(ProjectName=kit.project, JobName=job)["ModelPackagingDescription"]


def _snapshot(emulator: Any, target: Path, projects: list[str]) -> None:
    """The server's durable state as a crash would leave it: the database and the model files."""
    target.mkdir()
    with sqlite3.connect(emulator.settings.db_path) as source, sqlite3.connect(target / "metadata.sqlite3") as copy:
        source.backup(copy)
    for project in projects:
        shutil.copytree(emulator.settings.models_dir / project, target / "models" / project)


@sqlite_file_only
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
    server.stop_cleanly(signal.SIGINT)
