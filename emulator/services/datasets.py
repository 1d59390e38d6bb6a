"""Datasets: CreateDataset, DescribeDataset, ListDatasetEntries, UpdateDatasetEntries, DeleteDataset.

A project has at most one ``train`` and one ``test`` dataset. Importing a manifest and applying an
update are background jobs that read every image (and mask) from S3 before touching the dataset,
then write all entries and the final status in one transaction: a failed update leaves the entries
exactly as they were, and a crash mid-job leaves the dataset IN_PROGRESS with its input recorded
(`datasets.manifest` / `datasets.pending_changes`), so the start-up hook simply runs it again.

Decisions where the documentation is silent:
- CreateDataset validates only the request synchronously (project, dataset type, conflicts); the
  manifest itself - including whether it exists - is checked by the import and reported as
  CREATE_FAILED with a StatusMessage, as the API reference describes manifest validation as part
  of the asynchronous import.
- UpdateDatasetEntries rejects Changes that are not valid JSON lines at once (ValidationException
  naming the line): they are in the request, so there is nothing to wait for. Problems that need S3
  (missing images, formats, dimensions) and quotas end in UPDATE_FAILED_ROLLBACK_COMPLETE.
- An entry keeps its creation time (and its place in ListDatasetEntries) when an update replaces it.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, cast

from PIL import Image

from emulator.api.errors import ConflictException, ValidationException
from emulator.api.pagination import decode_token, page, page_size
from emulator.api.registry import OperationTable
from emulator.api.statuses import DATASET_JOB_RUNNING, DatasetStatus, ResourceType
from emulator.backend import Backend
from emulator.formats import jsontext
from emulator.formats.image_files import ImageError, decode_image
from emulator.formats.manifests import (
    ManifestError,
    ManifestLine,
    parse_line,
    parse_lines,
    parse_manifest,
    read_json_lines,
)
from emulator.jobs import DATASET, Outcome, handler
from emulator.s3.objects import ObjectNotFound
from emulator.s3.uri import parse_s3_uri, s3_uri
from emulator.services.lookups import DATASET_TYPE_NAMES, get_project, require_dataset
from emulator.store.records import Dataset, DatasetEntry, NewEntry

operations = OperationTable()

log = logging.getLogger(__name__)

# limits.md
MAX_IMAGES = {"train": 16_000, "test": 4_000}
MAX_MANIFEST_BYTES = 1024 ** 3
MAX_PROJECT_LABELS = 100

CREATE_IN_PROGRESS, CREATE_COMPLETE, CREATE_FAILED = (
    DatasetStatus.CREATE_IN_PROGRESS, DatasetStatus.CREATE_COMPLETE, DatasetStatus.CREATE_FAILED)
UPDATE_IN_PROGRESS, UPDATE_COMPLETE = DatasetStatus.UPDATE_IN_PROGRESS, DatasetStatus.UPDATE_COMPLETE
UPDATE_FAILED = DatasetStatus.UPDATE_FAILED_ROLLBACK_COMPLETE
IN_PROGRESS = DATASET_JOB_RUNNING


@dataclass(frozen=True)
class Entry(ManifestLine):
    """A dataset entry: the meaning of its JSON line plus when it entered the dataset."""

    created_at: float


# --- helpers other modules use (training, the console) -------------------------------------------

def dataset_summaries(backend: Backend, project: str) -> list[dict[str, Any]]:
    """DatasetMetadata of each dataset of a project (train first), for DescribeProject."""
    return [_metadata(dataset) for dataset in backend.store.datasets.of_project(project)]


def list_entries(backend: Backend, project: str, dataset_type: str) -> list[Entry]:
    """Every entry of a dataset in insertion order (ResourceNotFoundException if it does not exist)."""
    require_dataset(backend, project, dataset_type)
    return [_entry(entry) for entry in backend.store.entries.of_dataset(project, dataset_type)]


def add_entries(backend: Backend, project: str, dataset_type: str, lines: list[dict[str, Any]]) -> str:
    """Add or replace JSON lines (by source-ref) the way UpdateDatasetEntries does; returns the new status."""
    return _start_update(backend, project, dataset_type, list(enumerate(lines, start=1)))


def remove_entries(backend: Backend, project: str, dataset_type: str, source_refs: list[str]) -> int:
    """Remove the entries with these source-refs; returns how many there were.

    The API has no such operation, but the console removes images from a dataset; like an update,
    it is refused while an import or update is running.
    """
    with backend.store.transaction():
        row = require_dataset(backend, project, dataset_type)
        _refuse_while_in_progress(row, project, "changed")
        removed = backend.store.entries.remove(project, dataset_type, source_refs)
        backend.store.datasets.set_message(project, dataset_type, f"Removed {removed} images.", backend.now())
    return removed


# --- operations -----------------------------------------------------------------------------------

@operations.operation("CreateDataset")
def create_dataset(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    project, dataset_type = params["ProjectName"], params["DatasetType"]
    manifest = _manifest_location(params.get("DatasetSource"))
    status = CREATE_IN_PROGRESS if manifest else CREATE_COMPLETE
    message = (f"Importing the images listed in s3://{manifest['Bucket']}/{manifest['Key']}." if manifest
               else "Created an empty dataset.")
    now = backend.now()
    with backend.store.transaction():
        get_project(backend, project)
        existing = backend.store.datasets.get(project, dataset_type)
        if existing is not None:
            raise ConflictException(
                f"The project {project} already has a {dataset_type} dataset (status {existing.status}). "
                "Delete it before creating another.", resource_id=dataset_type, resource_type=ResourceType.DATASET)
        backend.store.datasets.add(project, dataset_type, status, message, now, manifest)
    if manifest:
        _submit(backend, project, dataset_type)
    # Not re-read: the import may already have finished, and this call reports what it started.
    return {"DatasetMetadata": {"DatasetType": dataset_type, "CreationTimestamp": now, "Status": status,
                                "StatusMessage": message}}


@operations.operation("DescribeDataset")
def describe_dataset(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    project, dataset_type = params["ProjectName"], params["DatasetType"]
    row = require_dataset(backend, project, dataset_type)
    stats = backend.store.entries.stats(project, dataset_type)
    return {"DatasetDescription": {
        "ProjectName": project, "DatasetType": dataset_type, "CreationTimestamp": row.created_at,
        "LastUpdatedTimestamp": row.updated_at, "Status": row.status, "StatusMessage": row.status_message,
        "ImageStats": {"Total": stats.total, "Labeled": stats.labeled, "Normal": stats.normal,
                       "Anomaly": stats.anomaly},
    }}


@operations.operation("ListDatasetEntries")
def list_dataset_entries(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    project, dataset_type = params["ProjectName"], params["DatasetType"]
    require_dataset(backend, project, dataset_type)
    after = decode_token(params.get("NextToken"), expected=int) or 0
    size = page_size(params.get("MaxResults"))
    before_date, after_date = params.get("BeforeCreationDate"), params.get("AfterCreationDate")
    rows = backend.store.entries.page(
        project, dataset_type, after, size + 1, labeled=params.get("Labeled"), label=params.get("AnomalyClass"),
        before=before_date.timestamp() if before_date else None, after=after_date.timestamp() if after_date else None,
        source_ref_contains=params.get("SourceRefContains"))
    shown, token = page(rows, size, lambda row: row.seq)
    return {"DatasetEntries": [row.line for row in shown], "NextToken": token}


@operations.operation("UpdateDatasetEntries")
def update_dataset_entries(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    try:
        numbered = read_json_lines(params["Changes"])
    except ManifestError as exc:
        raise ValidationException(f"The Changes are not valid JSON lines: {exc}") from None
    return {"Status": _start_update(backend, params["ProjectName"], params["DatasetType"], numbered)}


@operations.operation("DeleteDataset")
def delete_dataset(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    project, dataset_type = params["ProjectName"], params["DatasetType"]
    with backend.store.transaction():
        row = require_dataset(backend, project, dataset_type)
        _refuse_while_in_progress(row, project, "deleted")
        backend.store.datasets.delete(project, dataset_type)
    return {}


# --- internals ------------------------------------------------------------------------------------

def _metadata(dataset: Dataset) -> dict[str, Any]:
    return {"DatasetType": dataset.dataset_type, "CreationTimestamp": dataset.created_at, "Status": dataset.status,
            "StatusMessage": dataset.status_message}


def _entry(entry: DatasetEntry) -> Entry:
    meaning = parse_line(json.loads(entry.line), 0)  # stored lines were validated on the way in
    return Entry(**{f.name: getattr(meaning, f.name) for f in fields(ManifestLine)}, created_at=entry.created_at)


def _manifest_location(source: dict[str, Any] | None) -> dict[str, Any] | None:
    """The manifest's S3Object from a DatasetSource (None: create an empty dataset)."""
    if source is None:
        return None
    location = (source.get("GroundTruthManifest") or {}).get("S3Object")
    if location is None:
        raise ValidationException("DatasetSource must give the manifest's location in GroundTruthManifest.S3Object "
                                  "(Bucket and Key); leave DatasetSource out to create an empty dataset.")
    return cast(dict[str, Any], location)


def _refuse_while_in_progress(row: Dataset, project: str, action: str) -> None:
    if row.status in IN_PROGRESS:
        raise ConflictException(
            f"The {row.dataset_type} dataset of project {project} can't be {action} while its status is "
            f"{row.status}; wait until DescribeDataset reports that it has finished.",
            resource_id=row.dataset_type, resource_type=ResourceType.DATASET)


def _start_update(backend: Backend, project: str, dataset_type: str, numbered: list[tuple[int, Any]]) -> str:
    try:
        parsed = parse_lines(numbered)
    except ManifestError as exc:
        raise ValidationException(f"The Changes can't be applied: {exc}") from None
    if not parsed:
        raise ValidationException("The Changes contain no JSON lines.")
    with backend.store.transaction():
        row = require_dataset(backend, project, dataset_type)
        _refuse_while_in_progress(row, project, "updated")
        if row.status == CREATE_FAILED:
            raise ConflictException(
                f"The {dataset_type} dataset of project {project} failed to be created ({row.status_message}); "
                "delete it and create it again.", resource_id=dataset_type, resource_type=ResourceType.DATASET)
        backend.store.datasets.transition(project, dataset_type, (row.status,), UPDATE_IN_PROGRESS,
                                          f"Applying {len(parsed)} JSON lines to the dataset.", backend.now(),
                                          pending_changes=numbered)
    _submit(backend, project, dataset_type)
    return UPDATE_IN_PROGRESS


def _submit(backend: Backend, project: str, dataset_type: str, resumed: bool = False) -> None:
    backend.jobs.submit(DATASET, f"{project}/{dataset_type}", _run_job, backend, project, dataset_type,
                        resumed=resumed)


def resume_interrupted_jobs(backend: Backend) -> None:
    """Finish the imports and updates a crash interrupted: their input is recorded, and redoing one is
    safe because nothing of it was committed."""
    for row in backend.store.datasets.all_in(IN_PROGRESS):
        _submit(backend, row.project, row.dataset_type, resumed=True)


class _Interrupted(Exception):
    """The emulator is shutting down: the job stays IN_PROGRESS and start-up recovery redoes it."""


@handler
def _run_job(backend: Backend, project: str, dataset_type: str) -> Outcome:
    """Import a manifest or apply an update, then record the outcome in the dataset's status."""
    row = backend.store.datasets.get(project, dataset_type)
    if row is None or row.status not in IN_PROGRESS:  # gone, or a second run of a finished job
        return Outcome.SKIPPED
    creating = row.status == CREATE_IN_PROGRESS
    manifest_uri = ""
    try:
        if creating:
            location = row.manifest or {}
            manifest_uri = s3_uri(location["Bucket"], location["Key"])
            parsed = _read_manifest(backend, location, manifest_uri)
        else:
            parsed = parse_lines(row.pending_changes or [])
        checked, replaced = _check(backend, project, dataset_type, parsed)
        if creating:
            message = f"Imported {len(checked)} images from {manifest_uri}."
        else:
            message = f"Added {len(checked) - replaced} images and replaced {replaced}."
        _finish(backend, project, dataset_type, row.status, CREATE_COMPLETE if creating else UPDATE_COMPLETE,
                message, checked)
    except _Interrupted:
        return Outcome.INTERRUPTED
    except Exception as exc:  # every failure (committing the outcome included) ends the job with a status
        if isinstance(exc, ManifestError):
            reason = str(exc)
        else:  # a bug of ours: the traceback goes to the operator's log, not into the status
            log.exception("dataset job %s/%s failed", project, dataset_type)
            reason = "an internal error occurred; the server log has the details."
        if creating:
            _finish(backend, project, dataset_type, row.status, CREATE_FAILED,
                    f"The dataset could not be created from {manifest_uri}: {reason}")
        else:
            _finish(backend, project, dataset_type, row.status, UPDATE_FAILED,
                    f"The update was rolled back and the dataset is unchanged: {reason}")
        return Outcome.FAILED
    return Outcome.SUCCEEDED


def _read_manifest(backend: Backend, location: dict[str, Any], uri: str) -> list[tuple[int, ManifestLine]]:
    """Read and parse the manifest. S3Object.VersionId is recorded with the dataset but the current
    version is read: the ObjectStore interface has no versioned read yet."""
    bucket, key = location["Bucket"], location["Key"]
    try:
        size = backend.objects.size(bucket, key)
        if size > MAX_MANIFEST_BYTES:
            raise ManifestError(None, f"the manifest is {size} bytes; a manifest may be at most 1 GB.")
        data = backend.objects.get(bucket, key)
    except ObjectNotFound as exc:
        raise ManifestError(None, f"can't read the manifest: {exc}.") from None
    return parse_manifest(data)


@dataclass(frozen=True)
class _Checked:
    """A JSON line whose image (and mask) were read from S3 and found valid."""

    entry: ManifestLine
    width: int
    height: int


def _check(backend: Backend, project: str, dataset_type: str,
           parsed: list[tuple[int, ManifestLine]]) -> tuple[list[_Checked], int]:
    """Apply the dataset and project rules of limits.md to `parsed` as if merged into the dataset.

    Returns the checked lines and how many of them replace existing entries; raises ManifestError.
    """
    rows = backend.store.entries.of_project(project)
    incoming = {entry.source_ref for _, entry in parsed}
    mine = [r for r in rows if r.dataset_type == dataset_type]
    replaced = sum(1 for r in mine if r.source_ref in incoming)
    # Entries that stay as they are: the new lines must agree with them.
    kept = [r for r in rows if not (r.dataset_type == dataset_type and r.source_ref in incoming)]

    total = len(mine) + len(parsed) - replaced
    if total > MAX_IMAGES[dataset_type]:
        raise ManifestError(None, f"the {dataset_type} dataset would have {total} images; a "
                            f"{DATASET_TYPE_NAMES[dataset_type]} dataset may have at most "
                            f"{MAX_IMAGES[dataset_type]}.")
    _check_label_count(kept, parsed)
    bucket = parse_s3_uri(mine[0].source_ref)[0] if mine else parse_s3_uri(parsed[0][1].source_ref)[0]
    reference = (kept[0].source_ref, kept[0].width, kept[0].height) if kept else None
    checked = []
    for number, entry in parsed:
        if backend.jobs.stopping.is_set():
            raise _Interrupted
        image_bucket = parse_s3_uri(entry.source_ref)[0]
        if image_bucket != bucket:
            raise ManifestError(number, f"the image {entry.source_ref} is in bucket {image_bucket}, but the "
                                f"dataset's images are in bucket {bucket}; all images of a dataset must be in "
                                "one bucket.")
        width, height = _check_files(backend, entry, number)
        if reference is None:
            reference = (entry.source_ref, width, height)
        elif (width, height) != reference[1:]:
            raise ManifestError(number, f"the image {entry.source_ref} is {width}x{height} pixels but "
                                f"{reference[0]} is {reference[1]}x{reference[2]}; all images in a project must "
                                "have the same dimensions.")
        checked.append(_Checked(entry, width, height))
    return checked, replaced


def _check_label_count(kept: list[DatasetEntry], parsed: list[tuple[int, ManifestLine]]) -> None:
    new_labels = {name for _, entry in parsed for name in entry.label_colors}
    if not new_labels:
        return
    labels = new_labels | {name for row in kept for name in parse_line(json.loads(row.line), 0).label_colors}
    if len(labels) > MAX_PROJECT_LABELS:
        raise ManifestError(None, f"the project would have {len(labels)} anomaly labels; a project may have at "
                            f"most {MAX_PROJECT_LABELS}.")


def _check_files(backend: Backend, entry: ManifestLine, number: int) -> tuple[int, int]:
    """Read and decode the image and its mask; (width, height) of the image."""
    image = _decode(backend, entry.source_ref, number, "image", ("PNG", "JPEG"))
    if entry.mask_ref is not None:
        mask = _decode(backend, entry.mask_ref, number, "mask image", ("PNG",))
        if mask.size != image.size:
            raise ManifestError(number, f"the mask image {entry.mask_ref} is {mask.width}x{mask.height} pixels but "
                                f"its image {entry.source_ref} is {image.width}x{image.height}; they must match.")
    return image.size


def _decode(backend: Backend, uri: str, number: int, what: str, formats: tuple[str, ...]) -> Image.Image:
    bucket, key = parse_s3_uri(uri)  # parse_line checked the URI
    try:
        return decode_image(backend.objects.get(bucket, key), uri, formats)
    except ObjectNotFound as exc:
        raise ManifestError(number, f"can't read the {what}: {exc}.") from None
    except ImageError as exc:
        raise ManifestError(number, f"the {what} {exc}") from None


def _finish(backend: Backend, project: str, dataset_type: str, expected: str, status: str, message: str,
            checked: Sequence[_Checked] = ()) -> None:
    """Commit a job's outcome, unless the dataset went away meanwhile (its project was deleted)."""
    now = backend.now()
    with backend.store.transaction():
        if not backend.store.datasets.transition(project, dataset_type, (expected,), status,
                                                 jsontext.storable(message), now):
            return
        backend.store.entries.put(project, dataset_type, [
            NewEntry(c.entry.source_ref, c.entry.text, c.entry.label, c.width, c.height) for c in checked], now)
