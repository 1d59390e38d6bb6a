"""Reading and changing dataset entries for the console, through the datasets service.

Updates to a dataset run as a background job (as UpdateDatasetEntries does); a console action waits
for it to finish so that the page it returns to already shows the change, or the reason it failed.
"""
from __future__ import annotations

import datetime as dt
import time
from typing import Any

from emulator.api.errors import ConflictException, ValidationException
from emulator.api.statuses import DATASET_JOB_RUNNING, DatasetStatus, ResourceType
from emulator.backend import Backend
from emulator.formats.manifests import CLASSIFICATION_TYPE, ManifestLine
from emulator.services import datasets
from emulator.services.lookups import require_dataset

SETTLE_TIMEOUT_S = 300.0
CONSOLE_JOB = "labeling-job/lookout-emulator-console"


def labelled_line(entry: ManifestLine | None, source_ref: str, label: str) -> dict[str, Any]:
    """`entry`'s JSON line (or a new one) with a human-given `label`.

    The existing label attribute keeps its name. A normal image loses its anomaly mask; an anomaly
    keeps it. The attribute value follows LFV's output manifests: 1 for anomaly, 0 for normal.
    """
    line: dict[str, Any] = dict(entry.line) if entry else {"source-ref": source_ref}
    attribute = next((name[: -len("-metadata")] for name, value in line.items()
                      if name.endswith("-metadata") and isinstance(value, dict)
                      and value.get("type") == CLASSIFICATION_TYPE), "anomaly-label")
    if label == "normal" and entry is not None and entry.mask_ref is not None:
        mask_attribute = next(name for name, value in line.items() if value == entry.mask_ref)
        line.pop(mask_attribute)
        line.pop(f"{mask_attribute}-metadata", None)
    line[attribute] = 1 if label == "anomaly" else 0
    line[f"{attribute}-metadata"] = {
        "class-name": label, "type": CLASSIFICATION_TYPE, "human-annotated": "yes",
        "creation-date": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        "job-name": CONSOLE_JOB,
    }
    return line


def find_entries(backend: Backend, project: str, dataset_type: str, source_refs: list[str]) -> dict[str, ManifestLine]:
    wanted = set(source_refs)
    return {e.source_ref: e for e in datasets.list_entries(backend, project, dataset_type) if e.source_ref in wanted}


def put_lines(backend: Backend, project: str, dataset_type: str, lines: list[dict[str, Any]]) -> str:
    """Add or replace entries and wait for the update; the dataset's final StatusMessage."""
    datasets.add_entries(backend, project, dataset_type, lines)
    return wait_until_settled(backend, project, dataset_type)


def wait_until_settled(backend: Backend, project: str, dataset_type: str) -> str:
    """Wait for the dataset's job; raise ValidationException with its message if it failed."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        row = require_dataset(backend, project, dataset_type)
        if row.status not in DATASET_JOB_RUNNING:
            break
        if time.monotonic() > deadline:
            raise ConflictException(f"The {dataset_type} dataset is still {row.status}; reload the page later.",
                                    resource_id=dataset_type, resource_type=ResourceType.DATASET)
        time.sleep(0.05)
    if row.status == DatasetStatus.UPDATE_FAILED_ROLLBACK_COMPLETE:
        raise ValidationException(row.status_message or "The update failed.")
    return row.status_message or ""
