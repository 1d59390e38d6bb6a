"""The evaluation output of a trained model, in the formats of performance-metrics.md.

Training writes two objects to the model's OutputConfig S3 location:

* ``EvaluationManifest-<project>-<version>.json``: one JSON line per test image, its dataset line
  (the ground truth) plus ``anomaly-label-detected`` and its metadata (the prediction);
* ``EvaluationResult-<project>-<version>.json``: the aggregate metrics (ROC AUC, average
  precision, precision, recall, F1) with image counts, and per-label pixel metrics for a
  segmentation model.

The OutputConfig Prefix is prepended to these names as it is, as the service did: the awslabs SDK's
k-fold summary, run against the service, reads ``<prefix>EvaluationResult-<project>-<version>.json``
with the prefix ``k_fold_``. A prefix meant as a folder ends with ``/``.

Anomaly is the positive class throughout, as in DescribeModel's Performance.
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from emulator.backend import Backend
from emulator.formats import png
from emulator.formats.image_files import CONTENT_TYPES
from emulator.s3.objects import ObjectNotFound
from emulator.s3.uri import s3_uri
from emulator.services.training_plan import TrainingError, TrainingPlan

if TYPE_CHECKING:
    from engine import Metrics, Prediction


JOB_NAME = "training-job/anomaly-detection"


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).isoformat(timespec="microseconds")


def average_precision(labels: list[bool], scores: list[float]) -> float | None:
    """Area under the precision-recall curve as a step sum over score thresholds (ties together)."""
    positives = sum(labels)
    if positives == 0:
        return None
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    ranked_scores = np.asarray(scores, dtype=np.float64)[order]
    hits = np.cumsum(np.asarray(labels, dtype=np.float64)[order])
    last_of_tie = np.r_[ranked_scores[1:] != ranked_scores[:-1], True]
    tp, seen = hits[last_of_tie], (np.arange(len(scores)) + 1)[last_of_tie]
    recall = tp / positives
    precision = tp / seen
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


HEATMAP_REF = "anomaly-label-detected-heatmap-ref"
MASK_REF = "anomaly-label-detected-mask-ref"


def manifest_lines(plan: TrainingPlan, metrics: Metrics, timestamp: float,
                   refs: dict[str, dict[str, str]] | None = None) -> list[dict[str, Any]]:
    """Each test image's dataset line plus the model's prediction for it, and the emulator's own
    additions the web console overlays on the test results: `refs` by source-ref, i.e.
    ``anomaly-label-detected-heatmap-ref`` (the S3 URI of the anomaly map, every model) and, for a
    segmentation model, ``anomaly-label-detected-mask-ref`` (the predicted mask)."""
    predicted = {row["name"]: row for row in metrics.per_image}
    lines = []
    for sample in plan.test:
        row = predicted[sample.source_ref]
        line = dict(sample.line)
        line.update((refs or {}).get(sample.source_ref, {}))
        line["anomaly-label-detected"] = 1 if row["is_anomalous"] else 0
        line["anomaly-label-detected-metadata"] = {
            "class-name": "anomaly" if row["is_anomalous"] else "normal",
            "confidence": row["confidence"],
            "type": "groundtruth/image-classification",
            "human-annotated": "no",
            "creation-date": _iso(timestamp),
            "job-name": JOB_NAME,
            "model-arn": plan.model_arn,
            "project-name": plan.project,
            "model-version": str(plan.version),
        }
        lines.append(line)
    return lines


def result_document(plan: TrainingPlan, metrics: Metrics, timestamp: float) -> dict[str, Any]:
    """The EvaluationResult object (schema in performance-metrics.md)."""
    labels = [row["label"] == "anomaly" for row in metrics.per_image]
    scores = [row["score"] for row in metrics.per_image]
    aggregate: dict[str, Any] = {
        "ROCAUC": metrics.auroc,
        "AveragePrecision": average_precision(labels, scores),
        "Precision": metrics.precision,
        "Recall": metrics.recall,
        "F1Score": metrics.f1,
    }
    if plan.is_segmentation:
        aggregate["PixelAnomalyClassMetrics"] = [
            {"Precision": values["precision"], "Recall": values["recall"], "F1Score": values["f1"],
             "AIOU": values["iou"], "ClassName": name}
            for name, values in metrics.per_label.items()
        ]
    return {
        "Version": 1,
        "EvaluationDetails": {
            "ModelArn": plan.model_arn,
            "EvaluationEndTimestamp": _iso(timestamp),
            "NumberOfTrainingImages": len(plan.train),
            "NumberOfTestingImages": len(metrics.per_image),
        },
        "AggregatedEvaluationResults": {"Metrics": aggregate},
    }


def heatmap_png(anomaly_map: np.ndarray) -> bytes:
    """An engine anomaly map ((H, W) floats in [0, 1], >= 0.5 where a segmentation model paints) as
    an 8-bit greyscale PNG; the console colours it for its overlay."""
    return png.encode_grey(np.clip(np.rint(anomaly_map * 255.0), 0, 255).astype(np.uint8))


def write_evaluation(backend: Backend, plan: TrainingPlan, metrics: Metrics, timestamp: float,
                     predictions: Iterable[tuple[str, Prediction]] = ()) -> tuple[dict[str, str], dict[str, str]]:
    """Write both objects, and as PNGs the anomaly maps and predicted masks of the test images'
    `predictions` ((source-ref, prediction) pairs, taken one at a time: a large test set's maps need
    not fit in memory together); return their {Bucket, Key} (DescribeModel's EvaluationManifest/Result)."""
    suffix = f"{plan.project}-{plan.version}.json"
    manifest = {"Bucket": plan.output_bucket, "Key": f"{plan.output_prefix}EvaluationManifest-{suffix}"}
    result = {"Bucket": plan.output_bucket, "Key": f"{plan.output_prefix}EvaluationResult-{suffix}"}
    try:
        refs: dict[str, dict[str, str]] = {}
        for index, (source_ref, prediction) in enumerate(predictions):
            outputs = {HEATMAP_REF: ("EvaluationHeatmaps", heatmap_png(prediction.anomaly_map))}
            if prediction.mask is not None:
                outputs[MASK_REF] = ("EvaluationMasks", png.encode_rgb(prediction.mask))
            for attribute, (folder, data) in outputs.items():
                key = f"{plan.output_prefix}{folder}-{plan.project}-{plan.version}/{index}.png"
                backend.objects.put(plan.output_bucket, key, data, CONTENT_TYPES["PNG"])
                refs.setdefault(source_ref, {})[attribute] = s3_uri(plan.output_bucket, key)
        body = "".join(json.dumps(line) + "\n" for line in manifest_lines(plan, metrics, timestamp, refs))
        backend.objects.put(manifest["Bucket"], manifest["Key"], body.encode(), "application/json")
        backend.objects.put(result["Bucket"], result["Key"],
                            json.dumps(result_document(plan, metrics, timestamp), indent=2).encode(),
                            "application/json")
    except ObjectNotFound as exc:
        raise TrainingError(f"the evaluation results could not be written to the OutputConfig location "
                            f"s3://{plan.output_bucket}/{plan.output_prefix} ({exc}); create the bucket "
                            "and train again.") from None
    return manifest, result


