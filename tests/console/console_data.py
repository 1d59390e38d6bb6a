"""Synthetic data for the console tests: 96x96 textured parts with dark scratches, their masks, and
datasets staged through boto3 the way an SDK user would (manifest in S3, CreateDataset)."""
from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

SIDE = 96
CLASSIFICATION = "groundtruth/image-classification"
SEGMENTATION = "groundtruth/semantic-segmentation"


SCRATCH_HEIGHT, SCRATCH_WIDTH = 14, 30


def _scratch(rng: np.random.Generator) -> tuple[slice, slice]:
    row, col = rng.integers(20, 60, size=2)
    return slice(row, row + SCRATCH_HEIGHT), slice(col, col + SCRATCH_WIDTH)


def scratch_box(seed: int) -> tuple[slice, slice]:
    """Where ``synthetic_image(seed, True)`` has its scratch: (rows, columns)."""
    rng = np.random.default_rng(seed)
    rng.normal(0, 4, (SIDE, SIDE, 3))  # the same draws as the image
    return _scratch(rng)


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(buffer, "PNG")
    return buffer.getvalue()


def synthetic_image(seed: int, anomaly: bool) -> bytes:
    """A 96x96 textured "part" (PNG); an anomaly has a dark scratch across it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:SIDE, 0:SIDE]
    base = 150 + 40 * np.sin(x / 6.0) * np.cos(y / 9.0)
    pixels = np.stack([base, base * 0.9, base * 0.7], axis=-1) + rng.normal(0, 4, (SIDE, SIDE, 3))
    if anomaly:
        pixels[_scratch(rng)] = (25, 20, 20)
    return _png(pixels)


def synthetic_mask(seed: int, colour: tuple[int, int, int]) -> bytes:
    """The segmentation mask of ``synthetic_image(seed, True)``: white, its scratch in `colour`."""
    mask = np.full((SIDE, SIDE, 3), 255.0)
    mask[scratch_box(seed)] = colour
    return _png(mask)


def classification_line(ref: str, label: str) -> dict[str, Any]:
    return {"source-ref": ref, "anomaly-label": 1,
            "anomaly-label-metadata": {"class-name": label, "type": CLASSIFICATION, "human-annotated": "yes"}}


def segmentation_line(ref: str, mask_ref: str, label: str, colour: str) -> dict[str, Any]:
    """An anomaly with a mask whose only anomaly label is `label` in `colour` (#rrggbb) on white."""
    return {**classification_line(ref, "anomaly"), "anomaly-mask-ref": mask_ref,
            "anomaly-mask-ref-metadata": {"internal-color-map": {
                "0": {"class-name": "BACKGROUND", "hex-color": "#ffffff"},
                "1": {"class-name": label, "hex-color": colour}}, "type": SEGMENTATION, "human-annotated": "yes"}}


def create_dataset(lookout: Any, s3: Any, bucket: str, project: str, dataset_type: str,
                   lines: list[dict[str, Any]]) -> None:
    """Upload a manifest of `lines`, CreateDataset from it and wait until it is imported."""
    key = f"{project}/{dataset_type}.manifest"
    s3.put_object(Bucket=bucket, Key=key, Body="\n".join(json.dumps(line) for line in lines).encode())
    lookout.create_dataset(ProjectName=project, DatasetType=dataset_type, DatasetSource={
        "GroundTruthManifest": {"S3Object": {"Bucket": bucket, "Key": key}}})
    deadline = time.monotonic() + 120
    while (status := lookout.describe_dataset(ProjectName=project, DatasetType=dataset_type)
           ["DatasetDescription"]["Status"]) == "CREATE_IN_PROGRESS":
        assert time.monotonic() < deadline, "the manifest import did not finish"
        time.sleep(0.05)
    assert status == "CREATE_COMPLETE", status


Put = Callable[[str, bytes], str]


def stage_scratch_datasets(lookout: Any, s3: Any, bucket: str, project: str,
                           scratch_line: Callable[[Put, str, int], dict[str, Any]]) -> Put:
    """A project with separate train and test datasets of 10 normal and 10 scratched images each
    (the minimums of a segmentation model). ``scratch_line(put, name, seed)`` makes the line of the
    scratched image `name` (``synthetic_image(seed, True)``); ``put(name, data)`` stores an object
    under the project's prefix and returns its S3 URI (also returned, for more objects)."""
    s3.create_bucket(Bucket=bucket)

    def put(name: str, data: bytes) -> str:
        s3.put_object(Bucket=bucket, Key=f"{project}/{name}", Body=data)
        return f"s3://{bucket}/{project}/{name}"

    lookout.create_project(ProjectName=project)
    for dataset_type, offset in (("train", 0), ("test", 100)):
        lines = [classification_line(put(f"{dataset_type}-normal-{i}.png", synthetic_image(offset + i, False)),
                                     "normal") for i in range(10)]
        lines += [scratch_line(put, f"{dataset_type}-scratch-{i}", offset + 50 + i) for i in range(10)]
        create_dataset(lookout, s3, bucket, project, dataset_type, lines)
    return put
