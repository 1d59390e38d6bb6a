"""The typed records the repositories return: one frozen dataclass per kind of row, JSON columns
already decoded, so that no caller depends on a database driver's row type or column encoding."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Project:
    name: str
    arn: str
    created_at: float


@dataclass(frozen=True)
class Dataset:
    project: str
    dataset_type: str
    status: str
    status_message: str | None
    created_at: float
    updated_at: float
    manifest: dict[str, Any] | None  # the S3Object it is imported from (None: created empty)
    pending_changes: list[Any] | None  # [[line number, JSON line], ...] of a running update


@dataclass(frozen=True)
class DatasetEntry:
    seq: int
    project: str
    dataset_type: str
    source_ref: str
    line: str  # the JSON line as stored
    label: str | None  # 'normal' / 'anomaly' / None (unlabelled)
    width: int
    height: int
    created_at: float


@dataclass(frozen=True)
class NewEntry:
    """An entry a dataset job writes: checked JSON line and image size."""

    source_ref: str
    line: str
    label: str | None
    width: int
    height: int


@dataclass(frozen=True)
class ImageStats:
    total: int
    labeled: int
    normal: int
    anomaly: int


@dataclass(frozen=True)
class Model:
    project: str
    version: int
    arn: str
    status: str
    status_message: str | None
    description: str | None
    kms_key_id: str | None
    output_bucket: str
    output_prefix: str | None
    created_at: float
    performance: dict[str, Any] | None
    evaluation_manifest: dict[str, Any] | None
    evaluation_result: dict[str, Any] | None
    evaluation_end: float | None
    min_inference_units: int | None
    max_inference_units: int | None


@dataclass(frozen=True)
class TrainingProgress:
    """Where a model's training job is (written by the node training it, at most about once a second)."""

    started: float  # time.time() when this run of the job began
    stage: str
    fraction: float


@dataclass(frozen=True)
class PackagingJob:
    project: str
    job_name: str
    model_version: int
    status: str
    status_message: str | None
    description: str | None
    configuration: dict[str, Any]
    output_details: dict[str, Any] | None
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class Tag:
    key: str
    value: str


@dataclass(frozen=True)
class ClientToken:
    input_hash: str
    response: str  # the JSON the first call answered


@dataclass(frozen=True)
class Trial:
    project: str
    name: str
    model_version: int
    source: str
    status: str
    status_message: str | None
    created_at: float


@dataclass(frozen=True)
class TrialSummary(Trial):
    """A trial with its image counts, for the console's list of trials."""

    images: int
    anomalous: int
    verified: int


@dataclass(frozen=True)
class TrialImage:
    source_ref: str
    is_anomalous: bool | None
    confidence: float | None
    mask_ref: str | None
    heatmap_ref: str | None
    anomalies: list[dict[str, Any]]
    error: str | None
    verified: str | None
    added: bool


@dataclass(frozen=True)
class ModelHosting:
    """What one node holds of a model (emulator.services.hosting): loading, serving or failed."""

    node_id: str
    project: str
    version: int
    state: str
    message: str | None
    heartbeat_at: float


@dataclass(frozen=True)
class Node:
    """A running server: its roles and its last heartbeat."""

    node_id: str
    roles: tuple[str, ...]
    started_at: float
    heartbeat_at: float
    heartbeat_seconds: float
