"""Helpers of the dataset tests: synthetic images, JSON lines, and a kit that stages them in S3.

Every test gets its own S3 prefix and project, so tests share the session server without colliding.
"""
from __future__ import annotations

import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from PIL import Image

from emulator.jobs import TRAINING, JobRunner, Outcome, handler

BUCKET = "lookout-dataset-tests"
OTHER_BUCKET = "lookout-dataset-tests-other"
CLASSIFICATION = "groundtruth/image-classification"
SEGMENTATION = "groundtruth/semantic-segmentation"


def image_bytes(size: tuple[int, int] = (64, 64), fmt: str = "PNG",
                color: tuple[int, int, int] = (90, 120, 150)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, fmt)
    return buffer.getvalue()


def mask_bytes(size: tuple[int, int] = (64, 64), color: tuple[int, int, int] = (35, 164, 54),
               fmt: str = "PNG") -> bytes:
    """A white mask with one coloured square, like the masks the console draws."""
    mask = Image.new("RGB", size, (255, 255, 255))
    mask.paste(color, (4, 4, 20, 20))
    buffer = io.BytesIO()
    mask.save(buffer, fmt)
    return buffer.getvalue()


def labelled(ref: str, class_name: str, attribute: str = "anomaly-label", value: int = 1) -> dict[str, Any]:
    """A classification JSON line (the label attribute's value is irrelevant: class-name decides)."""
    return {"source-ref": ref, attribute: value,
            f"{attribute}-metadata": {"class-name": class_name, "type": CLASSIFICATION, "human-annotated": "yes",
                                      "confidence": 1, "job-name": "labeling-job/test"}}


def segmented(ref: str, mask_ref: str, colors: dict[str, str], background: bool = True) -> dict[str, Any]:
    """An anomaly line with a mask; `colors` maps anomaly labels to #RRGGBB."""
    color_map: dict[str, Any] = {"0": {"class-name": "BACKGROUND", "hex-color": "#ffffff", "confidence": 0.0}} \
        if background else {}
    for name, color in colors.items():
        color_map[str(len(color_map))] = {"class-name": name, "hex-color": color, "confidence": 0.0}
    return {**labelled(ref, "anomaly"), "anomaly-mask-ref": mask_ref,
            "anomaly-mask-ref-metadata": {"internal-color-map": color_map, "type": SEGMENTATION,
                                          "human-annotated": "yes"}}


def manifest_text(lines: list[dict[str, Any]]) -> bytes:
    return "\n".join(json.dumps(line) for line in lines).encode()


class DatasetKit:
    """Stages files under a unique S3 prefix and drives datasets of one project."""

    def __init__(self, lookout: Any, s3: Any, project: str) -> None:
        self.lookout, self.s3, self.project = lookout, s3, project
        self.prefix = f"{project}/"

    def put(self, name: str, data: bytes, bucket: str = BUCKET) -> str:
        """Upload `data` under this test's prefix; returns its s3:// URI."""
        key = self.prefix + name
        self.s3.put_object(Bucket=bucket, Key=key, Body=data)
        return f"s3://{bucket}/{key}"

    def images(self, count: int, stem: str = "img", **kwargs: Any) -> list[str]:
        return [self.put(f"{stem}-{i}.png", image_bytes(**kwargs)) for i in range(count)]

    def put_manifest(self, content: bytes | list[dict[str, Any]], name: str = "train.manifest") -> dict[str, str]:
        """Upload a manifest; returns the S3Object to pass in DatasetSource."""
        data = content if isinstance(content, bytes) else manifest_text(content)
        self.put(name, data)
        return {"Bucket": BUCKET, "Key": self.prefix + name}

    def create(self, dataset_type: str = "train", content: bytes | list[dict[str, Any]] | None = None,
               wait: bool = True) -> dict[str, Any]:
        """CreateDataset (empty, or from `content` as a manifest); returns the DatasetDescription once done."""
        kwargs: dict[str, Any] = {}
        if content is not None:
            manifest = self.put_manifest(content, f"{dataset_type}.manifest")
            kwargs["DatasetSource"] = {"GroundTruthManifest": {"S3Object": manifest}}
        created = self.lookout.create_dataset(ProjectName=self.project, DatasetType=dataset_type, **kwargs)
        return self.wait(dataset_type) if wait else created["DatasetMetadata"]

    def update(self, lines: list[dict[str, Any]], dataset_type: str = "train") -> dict[str, Any]:
        status = self.lookout.update_dataset_entries(ProjectName=self.project, DatasetType=dataset_type,
                                                     Changes=manifest_text(lines))["Status"]
        assert status == "UPDATE_IN_PROGRESS"
        return self.wait(dataset_type)

    def describe(self, dataset_type: str = "train") -> dict[str, Any]:
        return self.lookout.describe_dataset(ProjectName=self.project, DatasetType=dataset_type)["DatasetDescription"]

    def wait(self, dataset_type: str = "train", timeout: float = 60) -> dict[str, Any]:
        """Poll DescribeDataset, as a client does, until the dataset leaves its IN_PROGRESS state."""
        deadline = time.monotonic() + timeout
        while True:
            described = self.describe(dataset_type)
            if not described["Status"].endswith("_IN_PROGRESS"):
                return described
            assert time.monotonic() < deadline, f"dataset still {described['Status']} after {timeout}s"
            time.sleep(0.02)

    def entries(self, dataset_type: str = "train", **filters: Any) -> list[dict[str, Any]]:
        """Every entry (all pages) as parsed JSON."""
        paginator = self.lookout.get_paginator("list_dataset_entries")
        pages = paginator.paginate(ProjectName=self.project, DatasetType=dataset_type, **filters)
        return [json.loads(line) for page in pages for line in page["DatasetEntries"]]


# The holds of `jobs_held` blocks now running, by block: a held job names its block, because on
# PostgreSQL a job is a queue row that names its function and plain arguments.
_HOLDS: dict[str, tuple[threading.Semaphore, threading.Event]] = {}


@handler
def _hold(backend: Any, block: str) -> Outcome:
    started, release = _HOLDS[block]
    started.release()
    release.wait(60)
    return Outcome.SUCCEEDED


@contextmanager
def jobs_held(emulator: Any) -> Iterator[None]:
    """Occupy every worker of the server's job runner, so that jobs submitted meanwhile stay queued
    (their datasets stay IN_PROGRESS) until the block ends. On PostgreSQL trainings have workers of
    their own (`--max-trainings`), which are held too."""
    block = uuid.uuid4().hex
    started, release = _HOLDS[block] = threading.Semaphore(0), threading.Event()
    kinds = ["test"] * emulator.settings.job_workers
    if not isinstance(emulator.backend.jobs, JobRunner):
        kinds += [TRAINING] * emulator.settings.max_trainings
    for slot, kind in enumerate(kinds):
        emulator.backend.jobs.submit(kind, f"hold-the-workers-{slot}", _hold, emulator.backend, block)
    for _ in kinds:
        assert started.acquire(timeout=30), "the job runner did not start the holding jobs"
    try:
        yield
    finally:
        release.set()
        del _HOLDS[block]


def error_of(excinfo: pytest.ExceptionInfo[Any]) -> tuple[str, int, str]:
    """(code, HTTP status, message) of a botocore ClientError."""
    response = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]
