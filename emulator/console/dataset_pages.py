"""A dataset: the paged image grid with filters, upload, bulk labelling and removal."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from flask import Response, jsonify, render_template, request, url_for

from emulator.api.errors import ValidationException
from emulator.console.blueprint import back_to, backend, blueprint, call, count
from emulator.console.bucket import console_bucket
from emulator.console.entries import find_entries, labelled_line, put_lines
from emulator.console.readiness import training_readiness
from emulator.formats.image_files import ImageError, decode_image
from emulator.formats.manifests import LABELS, ManifestLine, parse_line
from emulator.s3.uri import s3_uri
from emulator.services import datasets

PAGE_SIZE = 24
# The filters of the grid, as ListDatasetEntries arguments.
FILTERS: dict[str, dict[str, Any]] = {
    "all": {},
    "labeled": {"Labeled": True},
    "unlabeled": {"Labeled": False},
    "normal": {"AnomalyClass": "normal"},
    "anomaly": {"AnomalyClass": "anomaly"},
}


@dataclass(frozen=True)
class Page:
    entries: list[ManifestLine]
    number: int
    has_next: bool


@blueprint.post("/projects/<project>/datasets")
def create_datasets(project: str) -> Response:
    """Create an empty dataset of each type in the form: ``train``, ``test`` or ``train,test``."""
    types = [t for t in request.form.get("types", "").split(",") if t]
    for dataset_type in types:
        call("CreateDataset", ProjectName=project, DatasetType=dataset_type)
    page = url_for("console.dataset_page", project=project, dataset_type=types[0]) if types else \
        url_for("console.project_page", project=project)
    return back_to(page, notice="Dataset created. Upload images from your computer to fill it.")


@blueprint.post("/projects/<project>/datasets/<dataset_type>/delete")
def delete_dataset(project: str, dataset_type: str) -> Response:
    call("DeleteDataset", ProjectName=project, DatasetType=dataset_type)
    return back_to(url_for("console.project_page", project=project), notice=f"The {dataset_type} dataset was deleted.")


@blueprint.get("/projects/<project>/datasets/<dataset_type>")
def dataset_page(project: str, dataset_type: str) -> str:
    dataset = call("DescribeDataset", ProjectName=project, DatasetType=dataset_type)["DatasetDescription"]
    shown = request.args.get("filter", "all")
    if shown not in FILTERS:
        raise ValidationException(f"Unknown filter {shown!r}; use one of {', '.join(FILTERS)}.")
    number = max(1, request.args.get("page", 1, type=int))
    return render_template("dataset.html", project_name=project, dataset=dataset, filters=FILTERS, shown=shown,
                           page=_page(project, dataset_type, number, FILTERS[shown]),
                           readiness=training_readiness(backend(), project))


def _page(project: str, dataset_type: str, number: int, filters: dict[str, Any]) -> Page:
    """Page `number` (1-based) of ListDatasetEntries with `filters`, walking the API's NextTokens."""
    token: str | None = None
    for current in range(1, number + 1):
        page = call("ListDatasetEntries", ProjectName=project, DatasetType=dataset_type, MaxResults=PAGE_SIZE,
                    **filters, **({"NextToken": token} if token else {}))
        token = page.get("NextToken")
        if token is None and current < number:
            return Page([], number, False)
    return Page([parse_line(json.loads(text), 0) for text in page["DatasetEntries"]], number, token is not None)


@blueprint.post("/projects/<project>/datasets/<dataset_type>/upload")
def upload_images(project: str, dataset_type: str) -> Response:
    """Store uploaded files in the console bucket and add them to the dataset (unlabelled, or with
    the label chosen in the form)."""
    call("DescribeDataset", ProjectName=project, DatasetType=dataset_type)  # the dataset must exist
    label = request.form.get("label") or None
    if label is not None and label not in LABELS:
        raise ValidationException(f"The label must be normal or anomaly, not {label!r}.")
    refs = store_uploads(f"datasets/{project}/{dataset_type}/")
    lines = [labelled_line(None, ref, label) if label else {"source-ref": ref} for ref in refs]
    put_lines(backend(), project, dataset_type, lines)
    # The page's script uploads in batches and reports the total when it returns to the dataset.
    return jsonify(added=len(refs), redirect=url_for("console.dataset_page", project=project,
                                                     dataset_type=dataset_type))


def store_uploads(prefix: str) -> list[str]:
    """Check each uploaded file is an image LFV accepts, put it under `prefix` in the console
    bucket and return the S3 URIs. Nothing is stored unless every file is acceptable."""
    files = request.files.getlist("file")
    if not files:
        raise ValidationException("Choose at least one PNG or JPEG image to upload.")
    checked = []
    for upload in files:
        data = upload.read()
        name = _safe_name(upload.filename or "image")
        try:
            decode_image(data, name)
        except ImageError as bad:
            raise ValidationException(str(bad)) from None
        checked.append((name, data, upload.mimetype or "application/octet-stream"))
    bucket = console_bucket(backend())
    for name, data, content_type in checked:
        backend().objects.put(bucket, prefix + name, data, content_type)
    return [s3_uri(bucket, prefix + name) for name, _, _ in checked]


def _safe_name(filename: str) -> str:
    """The file's own name, reduced to characters that are safe in an S3 key and a URL."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "image"


@blueprint.post("/projects/<project>/datasets/<dataset_type>/label")
def label_images(project: str, dataset_type: str) -> Response:
    label = request.form.get("label", "")
    if label not in LABELS:
        raise ValidationException(f"The label must be normal or anomaly, not {label!r}.")
    refs = _selected()
    existing = find_entries(backend(), project, dataset_type, refs)
    put_lines(backend(), project, dataset_type, [labelled_line(existing.get(ref), ref, label) for ref in refs])
    return back_to(_current_page(project, dataset_type), notice=f"Labelled {count(len(refs), 'image')} {label}.")


@blueprint.post("/projects/<project>/datasets/<dataset_type>/remove")
def remove_images(project: str, dataset_type: str) -> Response:
    removed = datasets.remove_entries(backend(), project, dataset_type, _selected())
    return back_to(_current_page(project, dataset_type), notice=f"Removed {count(removed, 'image')} from the dataset.")


def _selected() -> list[str]:
    refs = list(dict.fromkeys(request.form.getlist("ref")))
    if not refs:
        raise ValidationException("Select at least one image first.")
    return refs


def _current_page(project: str, dataset_type: str) -> str:
    return url_for("console.dataset_page", project=project, dataset_type=dataset_type,
                   filter=request.form.get("filter", "all"), page=request.form.get("page", 1))
