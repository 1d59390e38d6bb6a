"""Helpers of the model tests: separable synthetic images, trained models shared by the test modules.

Normal images are a smooth seeded colour texture; anomalies carry a dark square, and their masks
paint that square in the label colour on white. Training takes seconds at this size, so the trained
models the lifecycle tests need are built once per server (`trained`) and shared between the model,
detection and packaging test modules.
"""
from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tests.api.datasets_support import BUCKET, DatasetKit, labelled, segmented

SIZE = (96, 96)
LABEL, COLOUR = "scratch", "#2CA02C"
OUTPUT_BUCKET = "lookout-model-tests-output"
IN_PROGRESS = ("TRAINING", "STARTING_HOSTING", "STOPPING_HOSTING")


def texture(seed: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    """A normal image: low-frequency seeded noise, so no two normals are alike."""
    rng = np.random.default_rng(seed)
    width, height = size
    coarse = np.uint8(np.clip(128 + 25 * rng.normal(0, 1, (height // 4 + 1, width // 4 + 1, 3)), 0, 255))
    return np.array(Image.fromarray(coarse).resize((width, height), Image.BICUBIC))


def with_defect(seed: int, size: tuple[int, int] = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """An anomalous image (a dark square on the texture) and its mask (the square in COLOUR on white)."""
    image = texture(seed, size)
    rng = np.random.default_rng(seed + 10_000)
    width, height = size
    side = max(8, width // 8)
    x, y = (int(v) for v in (rng.integers(4, width - side - 4), rng.integers(4, height - side - 4)))
    image[y:y + side, x:x + side] = (20, 20, 20)
    mask = np.full_like(image, 255)
    mask[y:y + side, x:x + side] = tuple(int(COLOUR[i:i + 2], 16) for i in (1, 3, 5))
    return image, mask


def encode(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt)
    return buffer.getvalue()


class ModelKit(DatasetKit):
    """A DatasetKit that also stages synthetic datasets and drives models of its project."""

    def stage(self, dataset_type: str, normals: int, anomalies: int, masked: bool = False, seed: int = 0,
              size: tuple[int, int] = SIZE) -> list[dict[str, Any]]:
        """Upload images (and masks) and create the dataset from them; returns the manifest lines."""
        lines = self.upload(dataset_type, normals, anomalies, masked, seed, size)
        described = self.create(dataset_type, lines)
        assert described["Status"] == "CREATE_COMPLETE", described
        return lines

    def upload(self, dataset_type: str, normals: int, anomalies: int, masked: bool = False, seed: int = 0,
               size: tuple[int, int] = SIZE) -> list[dict[str, Any]]:
        """Upload images (and masks) for a dataset; returns their manifest lines."""
        lines = []
        for i in range(normals):
            ref = self.put(f"{dataset_type}/normal-{i}.png", encode(texture(seed + i, size)))
            lines.append(labelled(ref, "normal"))
        for i in range(anomalies):
            image, mask = with_defect(seed + 1000 + i, size)
            ref = self.put(f"{dataset_type}/anomaly-{i}.png", encode(image))
            if masked:
                lines.append(segmented(ref, self.put(f"{dataset_type}/mask-{i}.png", encode(mask)), {LABEL: COLOUR}))
            else:
                lines.append(labelled(ref, "anomaly"))
        return lines

    def object(self, uri: str) -> tuple[str, str]:
        bucket, key = uri[len("s3://"):].split("/", 1)
        return bucket, key

    def replace(self, uri: str, data: bytes) -> None:
        bucket, key = self.object(uri)
        self.s3.put_object(Bucket=bucket, Key=key, Body=data)

    def stage_doomed(self) -> None:
        """A dataset that passes CreateModel's checks but whose first image then vanishes from S3, so
        that training fails within milliseconds (for tests about the API rather than the engine)."""
        lines = self.stage("train", normals=20, anomalies=10, size=(64, 64))
        bucket, key = self.object(lines[0]["source-ref"])
        self.s3.delete_object(Bucket=bucket, Key=key)

    def failed_model(self) -> str:
        """A model version that failed to train."""
        self.stage_doomed()
        version = self.create_model()["ModelVersion"]
        assert self.wait_model(version)["Status"] == "TRAINING_FAILED"
        return version

    def cookies_lines(self, cookies: Path) -> list[dict[str, Any]]:
        """Upload the shared cookies training images and masks; the template's lines pointing at them."""
        files = cookies / "dataset-files"
        uris = {path.relative_to(files).as_posix(): self.put(path.relative_to(files).as_posix(), path.read_bytes())
                for path in sorted(files.glob("*-images/*"))}
        template = (files / "manifests" / "template.manifest").read_text().splitlines()
        return [{key: uris.get(value, value) if key.endswith("-ref") else value
                 for key, value in json.loads(raw).items()} for raw in template]

    def create_model(self, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("OutputConfig", {"S3Location": {"Bucket": OUTPUT_BUCKET, "Prefix": f"{self.project}/out"}})
        return self.lookout.create_model(ProjectName=self.project, **kwargs)["ModelMetadata"]

    def model(self, version: str) -> dict[str, Any]:
        return self.lookout.describe_model(ProjectName=self.project, ModelVersion=version)["ModelDescription"]

    def wait_model(self, version: str, timeout: float = 300) -> dict[str, Any]:
        """Poll DescribeModel, as a client does, until the model leaves its in-progress states."""
        deadline = time.monotonic() + timeout
        while True:
            described = self.model(version)
            if described["Status"] not in IN_PROGRESS:
                return described
            assert time.monotonic() < deadline, f"model still {described['Status']} after {timeout}s"
            time.sleep(0.05)

    def host(self, version: str, units: int = 1, **kwargs: Any) -> dict[str, Any]:
        status = self.lookout.start_model(ProjectName=self.project, ModelVersion=version,
                                          MinInferenceUnits=units, **kwargs)["Status"]
        assert status == "STARTING_HOSTING"
        described = self.wait_model(version)
        assert described["Status"] == "HOSTED", described
        return described

    def detect(self, version: str, body: bytes, content_type: str = "image/png") -> dict[str, Any]:
        return self.lookout.detect_anomalies(ProjectName=self.project, ModelVersion=version, Body=body,
                                             ContentType=content_type)["DetectAnomalyResult"]


@dataclass
class Trained:
    """A trained model (version "1") of its own project, with held-out images to detect on."""

    kit: ModelKit
    description: dict[str, Any]
    normals: list[bytes] = field(default_factory=list)
    anomalies: list[tuple[bytes, np.ndarray]] = field(default_factory=list)  # (PNG, mask)


_TRAINED: dict[tuple[str, str], Trained] = {}


def new_kit(lookout: Any, s3: Any, project: str) -> ModelKit:
    """A ModelKit on a new project, with the input and output buckets in place."""
    for bucket in (BUCKET, OUTPUT_BUCKET):
        s3.create_bucket(Bucket=bucket)
    lookout.create_project(ProjectName=project)
    return ModelKit(lookout, s3, project)


def trained(kind: str, lookout: Any, s3: Any) -> Trained:
    """The session's trained "classification" (single dataset, split automatically) or "segmentation"
    (separate training and test datasets) model, trained on first use."""
    key = (lookout.meta.endpoint_url, kind)
    if key not in _TRAINED:
        kit = new_kit(lookout, s3, f"trained-{kind}-{time.time_ns() % 10**9}")
        if kind == "classification":
            kit.stage("train", normals=20, anomalies=10)
        else:
            kit.stage("train", normals=10, anomalies=10, masked=True)
            kit.stage("test", normals=10, anomalies=10, masked=True, seed=500)
        kit.create_model(Description="shared-test-model")
        described = kit.wait_model("1")
        assert described["Status"] == "TRAINED", described
        held_out = [with_defect(9000 + i) for i in range(3)]
        _TRAINED[key] = Trained(kit, described, [encode(texture(8000 + i)) for i in range(3)],
                                [(encode(image), mask) for image, mask in held_out])
    return _TRAINED[key]
