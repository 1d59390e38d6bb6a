"""A trained model's test results as the console shows them, read from its evaluation output.

Training writes the EvaluationManifest (one line per test image: the dataset line, the ground truth,
plus ``anomaly-label-detected`` and its metadata) and the EvaluationResult (aggregate and per-label
metrics) to the model's OutputConfig location; DescribeModel says where. Reading those objects, as a
user of the real service would, keeps the console free of any second record of the results.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from emulator.backend import Backend
from emulator.formats.manifests import parse_line, read_json_lines
from emulator.s3.objects import ObjectNotFound

DETECTED = "anomaly-label-detected"


@dataclass(frozen=True)
class TestImage:
    source_ref: str
    actual: str | None
    predicted: str
    confidence: float
    mask_ref: str | None  # the ground-truth mask of a segmentation test image
    predicted_mask_ref: str | None

    @property
    def correct(self) -> bool:
        return self.actual == self.predicted


@dataclass(frozen=True)
class TestResults:
    images: list[TestImage]
    aggregate: dict[str, Any]  # EvaluationResult's AggregatedEvaluationResults.Metrics
    details: dict[str, Any]  # EvaluationResult's EvaluationDetails
    problem: str = ""  # why the output could not be read (shown instead of the results)

    @property
    def correct(self) -> int:
        return sum(image.correct for image in self.images)

    @property
    def incorrect(self) -> int:
        return len(self.images) - self.correct


def read_test_results(backend: Backend, model: dict[str, Any]) -> TestResults | None:
    """The results of a DescribeModel ModelDescription; None before evaluation has finished."""
    manifest, result = model.get("EvaluationManifest"), model.get("EvaluationResult")
    if not manifest or not result:
        return None
    try:
        lines = read_json_lines(backend.objects.get(manifest["Bucket"], manifest["Key"]))
        document = json.loads(backend.objects.get(result["Bucket"], result["Key"]))
    except (ObjectNotFound, ValueError) as exc:
        return TestResults([], {}, {}, problem=f"The evaluation output can't be read: {exc}")
    images = []
    for number, line in lines:
        meaning = parse_line({k: v for k, v in line.items() if not k.startswith(DETECTED)}, number)
        detected = line.get(f"{DETECTED}-metadata", {})
        images.append(TestImage(meaning.source_ref, meaning.label, detected.get("class-name", ""),
                                float(detected.get("confidence", 0.0)), meaning.mask_ref,
                                line.get(f"{DETECTED}-mask-ref")))
    return TestResults(images, document.get("AggregatedEvaluationResults", {}).get("Metrics", {}),
                       document.get("EvaluationDetails", {}))
