"""AWS's workshop clients, replayed against the emulator.

1. The calls of the workshop notebook ("Amazon Lookout for Vision Lab.ipynb" in
   aws-samples/amazon-lookout-for-vision), cell after cell with nothing in between, as its cells ran:
   manifests written from local ``normal``/``anomaly`` folders, images and manifests uploaded,
   CreateProject, two CreateDataset, CreateModel straight away, wait for TRAINED, StartModel, wait
   for HOSTED, DetectAnomalies on two extra images, StopModel. The notebook builds its output
   with string concatenation, so a member it reads that the emulator left out (StatusMessage)
   fails the replay exactly as it failed the notebook. Written here from reading the notebook;
   none of its code is copied.
2. The pattern of the same repository's inference-units load script (inference-units/tps.py):
   many users at once, each with its own client without retries, calling DetectAnomalies on a
   model started with 1 and then 2 inference units; any failed request counts.

Both run on the one model the notebook trains, on tiny synthetic images.
"""
from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest

from emulator.testing import LocalEmulator
from emulator.testing.mock import aws_environment
from tests.api.datasets_support import jobs_held
from tests.workflow.synthetic import write_folder_layout

TRAINED_WITHIN = 300.0  # seconds; the notebook itself would wait forever
USERS, REQUESTS_PER_USER = 8, 4


def _wait(client: Any, project: str, wanted: str) -> None:
    """The notebook's wait cells: poll DescribeModel until the status is `wanted` (bounded here)."""
    deadline = time.monotonic() + TRAINED_WITHIN
    while (described := client.describe_model(ProjectName=project, ModelVersion="1")["ModelDescription"])[
            "Status"] != wanted:
        assert described["Status"] in ("TRAINING", "STARTING_HOSTING", "STOPPING_HOSTING"), described
        assert time.monotonic() < deadline, f"still {described['Status']} after {TRAINED_WITHIN}s"
        time.sleep(0.2)


def _write_manifests(images: Path, bucket: str, project: str) -> list[Path]:
    """One manifest per dataset folder, a JSON line per image: the folder names the class, the
    label attribute is ``auto-label`` with 1 for normal and 0 for anomaly, as in the notebook."""
    written = []
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000")
    for dataset in ("train", "test"):
        path = images.parent / f"{dataset}.manifest"
        with path.open("w") as manifest:
            for folder in sorted(os.listdir(images / dataset)):
                for name in sorted(os.listdir(images / dataset / folder))[:20]:
                    manifest.write(json.dumps({
                        "source-ref": f"s3://{bucket}/{project}/{dataset}/{folder}/{name}",
                        "auto-label": 1 if folder == "normal" else 0,
                        "auto-label-metadata": {"confidence": 1, "job-name": "labeling-job/auto-label",
                                                "class-name": folder, "human-annotated": "yes",
                                                "creation-date": stamp, "type": "groundtruth/image-classification"},
                    }) + "\n")
        written.append(path)
    return written


def _replay_notebook(server: LocalEmulator, images: Path, bucket: str, project: str) -> list[str]:
    """The notebook's calls back to back; returns what its cells print."""
    out: list[str] = []
    client = boto3.client("lookoutvision")  # the notebook's client: region and endpoint from the environment
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    for manifest in _write_manifests(images, bucket, project):
        s3.upload_file(str(manifest), bucket, f"{project}/{manifest.name}")
    for path in sorted(images.rglob("*.jpg")):
        s3.upload_file(str(path), bucket, f"{project}/{path.relative_to(images).as_posix()}")

    out.append("project ARN: " + client.create_project(ProjectName=project)["ProjectMetadata"]["ProjectArn"])
    with jobs_held(server):  # the imports can't finish before CreateModel arrives, as on a busy service
        for dataset_type in ("train", "test"):
            source = json.loads(json.dumps({"GroundTruthManifest": {"S3Object": {
                "Bucket": bucket, "Key": f"{project}/{dataset_type}.manifest"}}}))
            response = client.create_dataset(ProjectName=project, DatasetType=dataset_type, DatasetSource=source)
            out.append("Dataset Status: " + response["DatasetMetadata"]["Status"])
            out.append("Dataset Status Message: " + response["DatasetMetadata"]["StatusMessage"])
            out.append("Dataset Type: " + response["DatasetMetadata"]["DatasetType"])
        response = client.create_model(ProjectName=project, OutputConfig={
            "S3Location": {"Bucket": bucket, "Prefix": project + "/model/"}})
        out.append("ARN: " + response["ModelMetadata"]["ModelArn"])
        out.append("Version: " + response["ModelMetadata"]["ModelVersion"])
        out.append("Status: " + response["ModelMetadata"]["Status"])
        out.append("Message: " + response["ModelMetadata"]["StatusMessage"])
    _wait(client, project, "TRAINED")
    response = client.start_model(ProjectName=project, ModelVersion="1", MinInferenceUnits=1)
    out.append("Status: " + response["Status"])
    _wait(client, project, "HOSTED")
    for name in ("extra-1.jpg", "extra-0.jpg"):  # an anomalous extra image, then a normal one
        with open(images / "extra" / name, "rb") as image:
            response = client.detect_anomalies(ProjectName=project, ContentType="image/jpeg", Body=image.read(),
                                               ModelVersion="1")
        out.append("Anomalous?: " + str(response["DetectAnomalyResult"]["IsAnomalous"]))
        out.append("Confidence: " + str(response["DetectAnomalyResult"]["Confidence"]))
    out.append("Status: " + client.stop_model(ProjectName=project, ModelVersion="1")["Status"])
    return out


@pytest.fixture(scope="module")
def notebook(lookoutvision_server: LocalEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The notebook replayed once; its printout, project and images."""
    root = tmp_path_factory.mktemp("workshop")
    # The notebook's circuit-board layout in miniature: the least a project with separate datasets trains on.
    images = write_folder_layout(root / "images", {"train/normal": 10, "train/anomaly": 5, "test/normal": 10,
                                                   "test/anomaly": 10, "extra": 2})
    project = f"circuitproject-{uuid.uuid4().hex[:6]}"
    with aws_environment(lookoutvision_server):
        printed = _replay_notebook(lookoutvision_server, images, f"lfv-s3-bucket-{project}", project)
    yield {"printed": printed, "project": project, "images": images, "server": lookoutvision_server}


@pytest.mark.slow
def test_the_workshop_notebook_runs_back_to_back(notebook: dict) -> None:
    printed = notebook["printed"]
    assert printed[1:7] == ["Dataset Status: CREATE_IN_PROGRESS",
                            f"Dataset Status Message: Importing the images listed in s3://lfv-s3-bucket-"
                            f"{notebook['project']}/{notebook['project']}/train.manifest.",
                            "Dataset Type: train",
                            "Dataset Status: CREATE_IN_PROGRESS",
                            f"Dataset Status Message: Importing the images listed in s3://lfv-s3-bucket-"
                            f"{notebook['project']}/{notebook['project']}/test.manifest.",
                            "Dataset Type: test"]
    assert printed[7].endswith(f":model/{notebook['project']}/1")
    assert printed[8:10] == ["Version: 1", "Status: TRAINING"]
    assert printed[10].startswith("Message: Training in progress: waiting for the ")
    assert printed[11] == "Status: STARTING_HOSTING"
    assert printed[12].startswith("Anomalous?: ") and printed[14].startswith("Anomalous?: ")
    assert printed[-1] == "Status: STOPPING_HOSTING"
    lookout = notebook["server"].client()
    model = lookout.describe_model(ProjectName=notebook["project"], ModelVersion="1")["ModelDescription"]
    project = notebook["project"]
    assert model["EvaluationResult"]["Key"] == f"{project}/model/EvaluationResult-{project}-1.json"
    for dataset_type in ("train", "test"):
        dataset = lookout.describe_dataset(ProjectName=notebook["project"], DatasetType=dataset_type)
        assert dataset["DatasetDescription"]["Status"] == "CREATE_COMPLETE"


def _load(clients: list[Any], project: str, bodies: list[bytes]) -> tuple[list[dict[str, Any]], list[Exception]]:
    """tps.py's users: all start together, each sends its requests back to back with its own client."""
    start = threading.Barrier(len(clients))

    def user(client: Any) -> tuple[list[dict[str, Any]], list[Exception]]:
        results, failures = [], []
        start.wait()
        for i in range(REQUESTS_PER_USER):
            try:
                response = client.detect_anomalies(ProjectName=project, ModelVersion="1", ContentType="image/jpeg",
                                                   Body=bodies[i % len(bodies)])
                results.append(response["DetectAnomalyResult"])
            except Exception as exc:  # noqa: BLE001 - tps.py counts every exception as a failed request
                failures.append(exc)
        return results, failures

    with ThreadPoolExecutor(len(clients)) as pool:
        outcomes = list(pool.map(user, clients))
    return [r for results, _ in outcomes for r in results], [f for _, failures in outcomes for f in failures]


@pytest.mark.slow
@pytest.mark.parametrize("units", [1, 2])
def test_the_inference_units_load_pattern_gets_no_failures(notebook: dict, units: int) -> None:
    server, project = notebook["server"], notebook["project"]
    lookout = server.client()
    _wait(lookout, project, "TRAINED")  # the notebook stopped it
    lookout.start_model(ProjectName=project, ModelVersion="1", MinInferenceUnits=units)
    _wait(lookout, project, "HOSTED")
    assert lookout.describe_model(ProjectName=project, ModelVersion="1")["ModelDescription"]["MinInferenceUnits"] \
        == units
    try:
        # The script's client: one attempt per request (no retries), so a throttled or failed call shows.
        clients = [server.client(retries={"max_attempts": 1, "mode": "standard"}) for _ in range(USERS)]
        bodies = [(notebook["images"] / "extra" / f"extra-{i}.jpg").read_bytes() for i in range(2)]
        results, failures = _load(clients, project, bodies)
    finally:
        lookout.stop_model(ProjectName=project, ModelVersion="1")
    assert failures == []
    assert len(results) == USERS * REQUESTS_PER_USER
    # Concurrent requests are batched up to the units; a verdict never depends on the company it keeps.
    for i in range(len(bodies)):
        answers = [r for n, r in enumerate(results) if (n % REQUESTS_PER_USER) % len(bodies) == i]
        assert len({a["IsAnomalous"] for a in answers}) == 1
        assert max(a["Confidence"] for a in answers) - min(a["Confidence"] for a in answers) < 1e-4
