"""StartModelPackagingJob / DescribeModelPackagingJob / ListModelPackagingJobs."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError
from PIL import Image

from tests.api.datasets_support import error_of, jobs_held
from tests.api.models_support import OUTPUT_BUCKET, Trained, new_kit, trained

PLATFORM = {"Os": "LINUX", "Arch": "X86_64"}


@pytest.fixture(scope="module")
def model(lookout: Any, s3: Any) -> Trained:
    return trained("classification", lookout, s3)


def _greengrass(name: str, **extra: Any) -> dict[str, Any]:
    return {"Greengrass": {"ComponentName": name, "S3OutputLocation": {"Bucket": OUTPUT_BUCKET, "Prefix": "packages"},
                           **extra}}


def _start(lookout: Any, project: str, configuration: dict[str, Any], version: str = "1", **kwargs: Any) -> str:
    return lookout.start_model_packaging_job(ProjectName=project, ModelVersion=version, Configuration=configuration,
                                             **kwargs)["JobName"]


def _wait(lookout: Any, project: str, job: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        described = lookout.describe_model_packaging_job(ProjectName=project, JobName=job)["ModelPackagingDescription"]
        if described["Status"] in ("SUCCEEDED", "FAILED"):
            return described
        assert time.monotonic() < deadline, f"packaging job still {described['Status']}"
        time.sleep(0.05)


def _unique(stem: str) -> str:
    return f"{stem}-{time.time_ns() % 10**12}"


def test_packaged_model_is_a_loadable_artifact(model: Trained, lookout: Any, s3: Any, tmp_path: Path) -> None:
    project, name = model.kit.project, _unique("component")
    configuration = _greengrass(name, TargetPlatform=PLATFORM, CompilerOptions='{"mcpu": "core-avx2"}',
                                ComponentDescription="cookie checker", Tags=[{"Key": "site", "Value": "line-1"}])
    job = _start(lookout, project, configuration, JobName=_unique("job"), Description="first package")
    described = _wait(lookout, project, job)
    assert described["Status"] == "SUCCEEDED", described["StatusMessage"]
    assert described["JobName"] == job and described["ProjectName"] == project and described["ModelVersion"] == "1"
    assert described["ModelPackagingConfiguration"] == configuration
    assert described["ModelPackagingJobDescription"] == "first package"
    assert described["ModelPackagingMethod"] == "Greengrass"
    assert described["CreationTimestamp"] <= described["LastUpdatedTimestamp"]
    output = described["ModelPackagingOutputDetails"]["Greengrass"]
    assert output["ComponentName"] == name and output["ComponentVersion"] == "1.0.0"  # the documented default
    assert output["ComponentVersionArn"].endswith(f":components:{name}:versions:1.0.0")

    folder = f"packages/{name}/1.0.0/"
    manifest = json.loads(s3.get_object(Bucket=OUTPUT_BUCKET, Key=folder + "lookout-model.json")["Body"].read())
    archive = s3.get_object(Bucket=OUTPUT_BUCKET, Key=folder + "model.tar.gz")["Body"].read()
    assert manifest["Archive"]["Sha256"] == hashlib.sha256(archive).hexdigest()
    assert manifest["ModelType"] == "classification"
    assert (manifest["ImageWidth"], manifest["ImageHeight"]) == (96, 96)
    assert manifest["Target"]["TargetPlatform"] == PLATFORM
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tmp_path, filter="data")
    assert json.loads((tmp_path / "lookout-model.json").read_text())["ComponentName"] == name

    import engine

    loaded = engine.load_model(tmp_path / "engine")
    image = np.asarray(Image.open(io.BytesIO(model.anomalies[0][0])).convert("RGB"))
    assert loaded.predict(image).is_anomalous is True


def test_job_name_is_generated_and_jobs_are_listed(model: Trained, lookout: Any) -> None:
    project = model.kit.project
    names = [_start(lookout, project, _greengrass(_unique("listed"), TargetDevice="jetson_xavier",
                                                  ComponentVersion="2.0.1")) for _ in range(3)]
    assert all(len(name) == 36 for name in names)  # a UUID, as in package-job-sdk.md
    for name in names:
        _wait(lookout, project, name)
    listed: list[dict[str, Any]] = []
    token: dict[str, str] = {}
    while True:
        page = lookout.list_model_packaging_jobs(ProjectName=project, MaxResults=2, **token)
        listed += page["ModelPackagingJobs"]
        if "NextToken" not in page:
            break
        token = {"NextToken": page["NextToken"]}
    by_name = {job["JobName"]: job for job in listed}
    assert set(names) <= set(by_name)
    job = by_name[names[0]]
    assert job["Status"] == "SUCCEEDED" and job["ModelPackagingMethod"] == "Greengrass" and job["ModelVersion"] == "1"
    assert "ModelPackagingConfiguration" not in job


def test_missing_output_bucket_fails_the_job(model: Trained, lookout: Any) -> None:
    configuration = {"Greengrass": {"ComponentName": _unique("nobucket"), "TargetPlatform": PLATFORM,
                                    "S3OutputLocation": {"Bucket": "no-such-bucket-for-packages"}}}
    described = _wait(lookout, model.kit.project, _start(lookout, model.kit.project, configuration))
    assert described["Status"] == "FAILED"
    assert "no-such-bucket-for-packages" in described["StatusMessage"]
    assert "ModelPackagingOutputDetails" not in described


@pytest.mark.parametrize("extra, expected", [
    ({}, "exactly one of TargetDevice and TargetPlatform"),
    ({"TargetDevice": "jetson_xavier", "TargetPlatform": PLATFORM}, "exactly one of TargetDevice and TargetPlatform"),
    ({"TargetDevice": "jetson_xavier", "CompilerOptions": '{"mcpu": "x"}'}, "can't be used with TargetDevice"),
    ({"TargetPlatform": {**PLATFORM, "Accelerator": "NVIDIA"}, "CompilerOptions": '{"gpu-code": "sm_75"}'},
     "missing: trt-ver, cuda-ver"),
    ({"TargetPlatform": PLATFORM, "CompilerOptions": "mcpu=core-avx2"}, "must be a JSON object"),
])
def test_target_validation(model: Trained, lookout: Any, extra: dict[str, Any], expected: str) -> None:
    with pytest.raises(ClientError) as err:
        _start(lookout, model.kit.project, _greengrass(_unique("bad"), **extra))
    code, status, message = error_of(err)
    assert (code, status) == ("ValidationException", 400) and expected in message


def test_configuration_is_validated_server_side(model: Trained, lookout_unvalidated: Any) -> None:
    with pytest.raises(ClientError) as err:
        _start(lookout_unvalidated, model.kit.project,
               _greengrass("bad name!", TargetPlatform={"Os": "WINDOWS", "Arch": "X86_64"}, ComponentVersion="1.0"))
    code, _, message = error_of(err)
    assert code == "ValidationException" and message.startswith("3 validation errors detected")


def test_duplicate_job_name_and_component_version_conflict(model: Trained, lookout: Any) -> None:
    project, job, name = model.kit.project, _unique("dup"), _unique("dupcomp")
    _wait(lookout, project, _start(lookout, project, _greengrass(name, TargetDevice="jetson_xavier"), JobName=job))
    with pytest.raises(ClientError) as err:
        _start(lookout, project, _greengrass(_unique("other"), TargetDevice="jetson_xavier"), JobName=job)
    code, status, message = error_of(err)
    assert (code, status) == ("ConflictException", 409) and job in message
    assert err.value.response["ResourceType"] == "MODEL_PACKAGE_JOB"
    with pytest.raises(ClientError) as err:
        _start(lookout, project, _greengrass(name, TargetDevice="jetson_xavier", ComponentVersion="1.0.0"))
    code, _, message = error_of(err)
    assert code == "ConflictException" and f"{name} version 1.0.0 already exists" in message


def test_unknown_project_model_and_job(model: Trained, lookout: Any, project_name: str) -> None:
    configuration = _greengrass(_unique("x"), TargetDevice="jetson_xavier")
    for call in (lambda: _start(lookout, project_name, configuration),
                 lambda: _start(lookout, model.kit.project, configuration, version="42"),
                 lambda: lookout.describe_model_packaging_job(ProjectName=model.kit.project, JobName="no-such-job"),
                 lambda: lookout.list_model_packaging_jobs(ProjectName=project_name)):
        with pytest.raises(ClientError) as err:
            call()
        assert error_of(err)[:2] == ("ResourceNotFoundException", 404)


def test_a_model_that_failed_to_train_cannot_be_packaged(lookout: Any, s3: Any, project_name: str) -> None:
    version = new_kit(lookout, s3, project_name).failed_model()
    with pytest.raises(ClientError) as err:
        _start(lookout, project_name, _greengrass(_unique("failed"), TargetDevice="jetson_xavier"), version=version)
    code, _, message = error_of(err)
    assert code == "ValidationException" and "failed to train" in message


def test_models_in_use_by_packaging_or_training_conflict(model: Trained, lookout: Any, s3: Any, emulator: Any,
                                                          project_name: str) -> None:
    kit = new_kit(lookout, s3, project_name)
    kit.stage_doomed()
    with jobs_held(emulator):  # the packaging job stays CREATED and the new model TRAINING
        job = _start(lookout, model.kit.project, _greengrass(_unique("busy"), TargetDevice="jetson_xavier"))
        with pytest.raises(ClientError) as err:
            lookout.delete_model(ProjectName=model.kit.project, ModelVersion="1")
        code, _, message = error_of(err)
        assert code == "ConflictException" and job in message
        version = kit.create_model()["ModelVersion"]
        with pytest.raises(ClientError) as err:
            _start(lookout, project_name, _greengrass(_unique("training"), TargetDevice="jetson_xavier"),
                   version=version)
        code, _, message = error_of(err)
        assert code == "ConflictException" and "TRAINING" in message
    assert _wait(lookout, model.kit.project, job)["Status"] == "SUCCEEDED"


@pytest.mark.parametrize("position", ["a-project-name", [1.5], [1.5, 7]])
def test_next_token_of_another_listing_is_invalid(model: Trained, lookout: Any, position: Any) -> None:
    from emulator.api.pagination import encode_token

    with pytest.raises(ClientError) as err:
        lookout.list_model_packaging_jobs(ProjectName=model.kit.project, NextToken=encode_token(position))
    code, _, message = error_of(err)
    assert code == "ValidationException" and "NextToken" in message
