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
from emulator.console.words import natural_key
from emulator.formats.manifests import parse_line, read_json_lines
from emulator.s3.objects import ObjectNotFound
from emulator.services.artifacts import read_engine_file
from emulator.services.evaluation_output import HEATMAP_REF, MASK_REF

DETECTED = "anomaly-label-detected"
# The engine normalises every model's anomaly score so that this is its decision threshold.
THRESHOLD = 0.5
_MAX_CONFIG_BYTES = 64 * 1024 * 1024
# Names people read for the engine's training report keys (engine/training.py); other keys the
# engine adds are shown under their own names.
REPORT_LABELS = {
    "candidate": "Scorer chosen", "cv_auroc": "Cross-validated ROC AUC per scorer", "cv_f1": "Cross-validated F1",
    "threshold": "Threshold on the raw score", "n_train": "Training images", "n_normal": "Normal training images",
    "n_anomaly": "Anomalous training images", "n_masked": "Training images with masks",
    "n_cv_images": "Images in cross-validation", "seg_iou_cv": "Cross-validated mask IoU",
    "work_size": "Working size (pixels)", "grid": "Feature grid", "memory_bank": "Memory bank (patches)",
    "choice": "Why this scorer", "threshold_rule": "How the threshold was chosen",
    "candidates": "Scorers tried (cross-validated)", "cv_confusion": "Cross-validated confusion counts",
    "device": "Device", "skipped": "Scorers not trained, and why",
    "finetuned_score": "What the fine-tuned scorer scores",
}


@dataclass(frozen=True)
class TestImage:
    index: int  # its line in the evaluation manifest, from 0 (the detail view's address)
    source_ref: str
    actual: str | None
    predicted: str
    confidence: float
    mask_ref: str | None  # the ground-truth mask of a segmentation test image
    label_colors: dict[str, str]  # its ground-truth labels' mask colours
    predicted_mask_ref: str | None
    heatmap_ref: str | None  # the model's anomaly map (every model trained since maps were kept)

    @property
    def correct(self) -> bool:
        return self.actual == self.predicted

    @property
    def score(self) -> float:
        return anomaly_score(self.predicted == "anomaly", self.confidence)


def anomaly_score(anomalous: bool, confidence: float) -> float:
    """The engine's anomaly score (0 to 1, anomalous from THRESHOLD up) behind a prediction: LFV's
    confidence is in the predicted label, so a normal prediction's confidence is 1 - score."""
    return confidence if anomalous else 1.0 - confidence


@dataclass(frozen=True)
class Confusion:
    """The test images by truth and verdict, in the words of an inspection line: defects caught or
    missed, good parts flagged (false alarms) or passed. Unlabelled test images are not counted."""

    caught: int
    missed: int
    false_alarms: int
    passed: int

    @property
    def defects(self) -> int:
        return self.caught + self.missed

    @property
    def good_parts(self) -> int:
        return self.false_alarms + self.passed


@dataclass(frozen=True)
class CurvePoint:
    """Precision and recall on the test images if images scoring `threshold` or more were flagged."""

    threshold: float
    recall: float
    precision: float


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

    def confusion(self) -> Confusion:
        """The model's own verdicts against the truth."""
        pairs = [(image.actual, image.predicted) for image in self.images if image.actual in ("normal", "anomaly")]
        return Confusion(pairs.count(("anomaly", "anomaly")), pairs.count(("anomaly", "normal")),
                         pairs.count(("normal", "anomaly")), pairs.count(("normal", "normal")))

    def precision_recall_curve(self) -> list[CurvePoint]:
        """A point for each distinct test score used as the threshold, from the highest score down
        (recall rising); none when the test set has no anomaly, as recall is then undefined."""
        scored = [(image.score, image.actual == "anomaly") for image in self.images
                  if image.actual in ("normal", "anomaly")]
        anomalies = sum(anomalous for _, anomalous in scored)
        if not anomalies:
            return []
        points = []
        for threshold in sorted({score for score, _ in scored}, reverse=True):
            flagged = [anomalous for score, anomalous in scored if score >= threshold]
            points.append(CurvePoint(threshold, sum(flagged) / anomalies, sum(flagged) / len(flagged)))
        return points


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
    for index, (number, line) in enumerate(lines):
        meaning = parse_line({k: v for k, v in line.items() if not k.startswith(DETECTED)}, number)
        detected = line.get(f"{DETECTED}-metadata", {})
        images.append(TestImage(index, meaning.source_ref, meaning.label, detected.get("class-name", ""),
                                float(detected.get("confidence", 0.0)), meaning.mask_ref,
                                dict(meaning.label_colors), line.get(MASK_REF), line.get(HEATMAP_REF)))
    return TestResults(images, document.get("AggregatedEvaluationResults", {}).get("Metrics", {}),
                       document.get("EvaluationDetails", {}))


@dataclass(frozen=True)
class EngineFacts:
    """What the model's engine artifact says about how it decides: its labels' mask colours and the
    training report (the candidate training chose, its cross-validated scores, the threshold)."""

    label_colors: dict[str, str]
    report: dict[str, Any]


def engine_facts(backend: Backend, project: str, version: str) -> EngineFacts | None:
    """Read from the artifact's JSON (no tensors are loaded); None if the model has none (yet)."""
    data = read_engine_file(backend, project, int(version), "model.json")
    if data is None or len(data) > _MAX_CONFIG_BYTES:
        return None
    try:
        config = json.loads(data)
    except ValueError:
        return None
    if not isinstance(config, dict):
        return None
    colours = dict(zip(config.get("labels") or [], config.get("colours") or [], strict=False))
    report = config.get("training")
    return EngineFacts(colours, report if isinstance(report, dict) else {})


@dataclass(frozen=True)
class Disagreement:
    """A test image two models judged differently: the image as each model's results list it."""

    first: TestImage
    second: TestImage

    @property
    def right(self) -> int | None:
        """Which model was right (0 or 1); None when the image has no true label."""
        if self.first.actual not in ("normal", "anomaly"):
            return None
        return 0 if self.first.correct else 1


@dataclass(frozen=True)
class Comparison:
    """Two models' verdicts on the test images they share (their test sets may differ when the
    datasets changed between trainings)."""

    shared: int
    disagreements: list[Disagreement]

    def wins(self, which: int) -> int:
        """How many of the disagreements model `which` (0 or 1) got right."""
        return sum(d.right == which for d in self.disagreements)


def compare(first: TestResults, second: TestResults) -> Comparison:
    """The shared test images on which `first` and `second` predicted different labels, in natural
    order of their file names."""
    theirs = {image.source_ref: image for image in second.images}
    shared = [(image, theirs[image.source_ref]) for image in first.images if image.source_ref in theirs]
    differ = [Disagreement(a, b) for a, b in shared if a.predicted != b.predicted]
    return Comparison(len(shared), sorted(differ, key=lambda d: natural_key(d.first.source_ref)))
