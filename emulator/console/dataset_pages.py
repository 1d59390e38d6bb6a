"""A dataset: the paged image grid with filters, upload, bulk labelling and removal."""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flask import Response, jsonify, render_template, request, url_for

from emulator.api.errors import ResourceNotFoundException, ValidationException
from emulator.console.blueprint import back_to, backend, blueprint, call
from emulator.console.bucket import console_bucket
from emulator.console.colours import label_colours
from emulator.console.entries import find_entries, labelled_line, put_lines
from emulator.console.objects import label_areas, overlays
from emulator.console.readiness import training_readiness
from emulator.console.words import count, natural_key
from emulator.formats.image_files import ImageError, decode_image
from emulator.formats.manifests import LABELS, ManifestLine
from emulator.s3.uri import s3_uri
from emulator.services import datasets

PAGE_SIZE = 24
# The filters of the grid (those of ListDatasetEntries: Labeled, AnomalyClass).
FILTERS: dict[str, Callable[[ManifestLine], bool]] = {
    "all": lambda entry: True,
    "labeled": lambda entry: entry.label is not None,
    "unlabeled": lambda entry: entry.label is None,
    "normal": lambda entry: entry.label == "normal",
    "anomaly": lambda entry: entry.label == "anomaly",
    "masked": lambda entry: entry.mask_ref is not None,
    "needs-mask": lambda entry: entry.label == "anomaly" and entry.mask_ref is None,
}
# The grid's orders: by file name (natural: anomaly-2 before anomaly-10), or by label first.
SORTS: dict[str, Callable[[ManifestLine], tuple[object, ...]]] = {
    "name": lambda entry: natural_key(entry.source_ref),
    "label": lambda entry: (entry.label or "", natural_key(entry.source_ref)),
}


@dataclass(frozen=True)
class Page:
    entries: Sequence[ManifestLine]
    number: int
    has_next: bool
    matching: int  # entries the filter and search select, on every page


@dataclass(frozen=True)
class GridView:
    """What the grid shows: a filter, a search in file names, an order and a page (1-based)."""

    shown: str
    search: str
    order: str
    number: int

    def args(self, **changed: Any) -> dict[str, Any]:
        """The query arguments of this view (with `changed` ones), for links and forms that keep it."""
        return {"filter": self.shown, "q": self.search, "sort": self.order, "page": self.number, **changed}


def _grid_view(args: Mapping[str, str]) -> GridView:
    shown, order = args.get("filter", "all"), args.get("sort", "name")
    if shown not in FILTERS:
        raise ValidationException(f"Unknown filter {shown!r}; use one of {', '.join(FILTERS)}.")
    if order not in SORTS:
        raise ValidationException(f"Unknown sort order {order!r}; use one of {', '.join(SORTS)}.")
    page = args.get("page", "1")
    return GridView(shown, args.get("q", "").strip(), order, max(1, int(page) if page.isdigit() else 1))


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
    view = _grid_view(request.args)
    page = _page(project, dataset_type, view)
    return render_template("dataset.html", project_name=project, dataset=dataset, filters=FILTERS, sorts=SORTS,
                           view=view, shown=view.shown, page=page, readiness=training_readiness(backend(), project),
                           colours=label_colours(name for entry in page.entries for name in entry.label_colors))


@blueprint.get("/projects/<project>/datasets/<dataset_type>/image")
def dataset_image_page(project: str, dataset_type: str) -> str:
    """One dataset image (``?ref=<source-ref>``) in full, with its mask as an overlay."""
    ref = request.args.get("ref", "")
    entry = find_entries(backend(), project, dataset_type, [ref]).get(ref)
    if entry is None:
        raise ResourceNotFoundException(f"The {dataset_type} dataset of project {project} has no image {ref}.")
    areas = label_areas(entry.mask_ref, entry.label_colors) if entry.mask_ref and entry.label_colors else {}
    return render_template(
        "image.html", project_name=project, title=ref.rsplit("/", 1)[-1],
        crumbs=[(f"{dataset_type} dataset",
                 url_for("console.dataset_page", project=project, dataset_type=dataset_type))],
        source_ref=ref, overlays=overlays(None, (None, {}), (entry.mask_ref, entry.label_colors)), areas=areas,
        colours=label_colours(entry.label_colors), facts={"Label": entry.label or "unlabeled"},
        previous=None, next=None,
        mask_editor=url_for("console.mask_editor_page", project=project, dataset_type=dataset_type, ref=ref))


def _page(project: str, dataset_type: str, view: GridView) -> Page:
    """The page of entries `view` selects (its filter and a case-insensitive search in file names),
    in its order, so that a page is where a person looks for an image."""
    wanted, search = FILTERS[view.shown], view.search.casefold()
    entries = sorted((entry for entry in datasets.list_entries(backend(), project, dataset_type)
                      if wanted(entry) and search in entry.source_ref.rsplit("/", 1)[-1].casefold()),
                     key=SORTS[view.order])
    start = (view.number - 1) * PAGE_SIZE
    return Page(entries[start:start + PAGE_SIZE], view.number, len(entries) > start + PAGE_SIZE, len(entries))


@blueprint.post("/projects/<project>/datasets/<dataset_type>/upload")
def upload_images(project: str, dataset_type: str) -> Response:
    """Store uploaded files in the console bucket and add them to the dataset (unlabeled, or with
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
    return back_to(_current_page(project, dataset_type), notice=f"Labeled {count(len(refs), 'image')} {label}.")


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
    """The grid view a bulk form was posted from (its hidden fields repeat the view's arguments)."""
    return url_for("console.dataset_page", project=project, dataset_type=dataset_type,
                   **_grid_view(request.form).args())
