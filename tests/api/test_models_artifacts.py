"""Model artifacts live in the object store; a node's data dir only caches them (issue 23, requirement 4)."""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from emulator.testing import LocalEmulator
from emulator.testing.local import TEST_CREDENTIALS, TEST_DATABASE_VARIABLE
from tests.api.models_support import OUTPUT_BUCKET, ModelKit, encode, new_kit, texture, with_defect


def _artifact_bucket(emu: Any) -> str:
    """The README's naming rule: one system bucket per account."""
    return f"lookout-emulator-artifacts-{emu.settings.account_id}"


def _stored(s3: Any, bucket: str, project: str, version: str = "1") -> list[str]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"models/{project}/{version}/")
    return sorted(item["Key"] for item in listed.get("Contents", []))


def _trained_kit(emu: Any, project: str) -> ModelKit:
    kit = new_kit(emu.client("lookoutvision"), emu.client("s3"), project)
    kit.stage("train", normals=20, anomalies=10, size=(64, 64))
    kit.create_model()
    described = kit.wait_model("1")
    assert described["Status"] == "TRAINED", described["StatusMessage"]
    return kit


def _packaged(kit: ModelKit, job: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (described := kit.lookout.describe_model_packaging_job(ProjectName=kit.project, JobName=job)[
            "ModelPackagingDescription"])["Status"] in ("CREATED", "RUNNING"):
        assert time.monotonic() < deadline, described
        time.sleep(0.1)
    return described


def _stop(kit: ModelKit, version: str = "1") -> None:
    kit.lookout.stop_model(ProjectName=kit.project, ModelVersion=version)
    assert kit.wait_model(version)["Status"] == "TRAINED"


def test_the_local_cache_is_rebuilt_from_the_store_and_delete_model_removes_the_objects(
        emulator: LocalEmulator, project_name: str) -> None:
    kit = _trained_kit(emulator, project_name)
    bucket = _artifact_bucket(emulator)
    keys = _stored(kit.s3, bucket, project_name)
    assert f"models/{project_name}/1/manifest.json" in keys
    assert f"models/{project_name}/1/engine/model.json" in keys
    cache = emulator.settings.models_dir / project_name / "1" / "engine"

    shutil.rmtree(cache)  # the cache is gone: StartModel fetches it again
    kit.host("1")
    assert (cache / "model.json").is_file()
    assert "IsAnomalous" in kit.detect("1", encode(texture(8100, (64, 64))))
    _stop(kit)

    # A stale or damaged cache is replaced by the stored artifact, whole.
    weights = next(path for path in cache.iterdir() if path.suffix == ".safetensors")
    original = weights.read_bytes()
    weights.write_bytes(b"not the stored artifact")
    kit.host("1")
    assert weights.read_bytes() == original
    assert not [path for path in cache.parent.iterdir() if path.name.startswith(".")]  # no temporary folder left
    _stop(kit)

    kit.lookout.delete_model(ProjectName=project_name, ModelVersion="1")
    assert _stored(kit.s3, bucket, project_name) == []


def test_a_stored_artifact_that_does_not_match_its_manifest_fails_hosting_with_a_reason(
        emulator: LocalEmulator, project_name: str) -> None:
    kit = _trained_kit(emulator, project_name)
    bucket = _artifact_bucket(emulator)
    key = f"models/{project_name}/1/engine/tensors.safetensors"
    kit.s3.put_object(Bucket=bucket, Key=key, Body=b"damaged in the store")
    cache = emulator.settings.models_dir / project_name / "1" / "engine"
    original = (cache / "tensors.safetensors").read_bytes()
    (cache / "tensors.safetensors").write_bytes(b"stale")
    kit.lookout.start_model(ProjectName=project_name, ModelVersion="1", MinInferenceUnits=1)
    described = kit.wait_model("1")
    assert described["Status"] == "HOSTING_FAILED"
    assert f"s3://{bucket}/{key} does not match the artifact's manifest" in described["StatusMessage"]
    assert (cache / "tensors.safetensors").read_bytes() == b"stale"  # the cache was not half replaced
    kit.s3.put_object(Bucket=bucket, Key=key, Body=original)  # repaired: it starts
    kit.host("1")
    assert (cache / "tensors.safetensors").read_bytes() == original
    assert not [path.name for path in cache.parent.iterdir() if path.name.startswith(".")]
    _stop(kit)


def test_a_model_with_only_local_files_is_published_on_load_and_at_start(tmp_path: Path) -> None:
    """A data dir of the release before artifacts moved to the store: nothing is lost."""
    with LocalEmulator(data_dir=tmp_path) as emu:
        kit = _trained_kit(emu, "legacy")
        bucket = _artifact_bucket(emu)
        for key in _stored(kit.s3, bucket, "legacy"):  # as the earlier release left it: local files only
            kit.s3.delete_object(Bucket=bucket, Key=key)
        kit.host("1")  # the first load publishes the local artifact
        assert "models/legacy/1/manifest.json" in _stored(kit.s3, bucket, "legacy")
        _stop(kit)
        for key in _stored(kit.s3, bucket, "legacy"):
            kit.s3.delete_object(Bucket=bucket, Key=key)
    with LocalEmulator(data_dir=tmp_path) as emu:  # start-up publishes what only the disk has
        s3 = emu.client("s3")
        assert "models/legacy/1/manifest.json" in _stored(s3, bucket, "legacy")


@pytest.mark.skipif(f"not os.environ.get({TEST_DATABASE_VARIABLE!r})",
                    reason="two servers share one database only on PostgreSQL (SQLite lives in the data dir, "
                           "which one server locks); run with --database postgresql")
def test_a_model_trained_on_one_node_is_hosted_by_another_with_an_empty_data_dir(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The second node uses the first one's embedded S3 as its store (moto's S3 is per process)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", TEST_CREDENTIALS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_CREDENTIALS["aws_secret_access_key"])
    with LocalEmulator() as trainer:
        kit = _trained_kit(trainer, "shared")
        with LocalEmulator(database_url=trainer.settings.database_url,
                           s3_endpoint_url=trainer.endpoint_url) as other:
            assert not (other.settings.models_dir / "shared").exists()
            there = ModelKit(other.client("lookoutvision"), kit.s3, "shared")
            package = {"Greengrass": {"ComponentName": "shared-component",
                                      "TargetPlatform": {"Os": "LINUX", "Arch": "X86_64"},
                                      "S3OutputLocation": {"Bucket": OUTPUT_BUCKET, "Prefix": "packages"}}}
            job = there.lookout.start_model_packaging_job(ProjectName="shared", ModelVersion="1",
                                                          Configuration=package)["JobName"]
            # Packaging fetched the model into the cache of whichever node the job queue gave the job to.
            assert _packaged(there, job)["Status"] == "SUCCEEDED"
            shutil.rmtree(other.settings.models_dir / "shared", ignore_errors=True)
            there.host("1")  # loaded from the shared store into this node's empty cache
            assert (other.settings.models_dir / "shared" / "1" / "engine" / "model.json").is_file()
            for image in (texture(8200, (64, 64)), with_defect(9100, (64, 64))[0]):
                assert isinstance(there.detect("1", encode(image))["IsAnomalous"], bool)
            _stop(there)
            there.lookout.delete_model(ProjectName="shared", ModelVersion="1")
            assert _stored(kit.s3, _artifact_bucket(trainer), "shared") == []


@pytest.mark.skipif(f"not os.environ.get({TEST_DATABASE_VARIABLE!r})",
                    reason="two servers share one database only on PostgreSQL; run with --database postgresql")
def test_a_node_starting_while_another_trains_resumes_the_training_from_the_stored_plan(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Start-up recovery on a node that never saw CreateModel reads the plan from the store; before,
    it found no local plan and failed the other node's training."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", TEST_CREDENTIALS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_CREDENTIALS["aws_secret_access_key"])
    with LocalEmulator() as trainer:
        kit = new_kit(trainer.client("lookoutvision"), trainer.client("s3"), "resumed")
        kit.stage("train", normals=20, anomalies=10)
        kit.create_model()
        assert kit.model("1")["Status"] == "TRAINING"
        with LocalEmulator(database_url=trainer.settings.database_url, s3_endpoint_url=trainer.endpoint_url):
            described = kit.wait_model("1")
            assert described["Status"] == "TRAINED", described["StatusMessage"]
