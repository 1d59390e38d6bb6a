"""The mask editor: draw the anomaly mask of a dataset image in the browser.

The browser paints a label map and sends it as an RGB PNG in the labels' own colours on a white
background, with the labels (name and ``#RRGGBB``). The server checks that the PNG is exactly that
(the image's size, no colour but the labels' and white), stores it in the console bucket and puts
the image's JSON line through the same update as UpdateDatasetEntries: the image becomes an anomaly
whose ``groundtruth/semantic-segmentation`` attribute names the PNG and its ``internal-color-map``,
as Ground Truth writes it. So the API, the manifest and training see exactly what was drawn.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from flask import Response, jsonify, render_template, request, url_for

from emulator.api.errors import ResourceNotFoundException, ValidationException
from emulator.console.blueprint import backend, blueprint
from emulator.console.bucket import console_bucket
from emulator.console.entries import CONSOLE_JOB, find_entries, labelled_line, put_lines
from emulator.console.objects import pack_rgb
from emulator.console.words import natural_key
from emulator.formats.image_files import CONTENT_TYPES, ImageError, as_rgb, decode_image
from emulator.formats.manifests import BACKGROUND, MAX_MASK_LABELS, SEGMENTATION_TYPE, ManifestLine
from emulator.formats.png import encode_rgb
from emulator.s3.objects import ObjectNotFound
from emulator.s3.uri import parse_s3_uri, s3_uri
from emulator.services import datasets

# White is the mask's background (Ground Truth's BACKGROUND colour); black is where DetectAnomalies'
# masks have no anomaly, so the console's overlays treat both as "no label".
BACKGROUND_HEX = "#FFFFFF"
RESERVED_HEX = (BACKGROUND_HEX, "#000000")
MASK_ATTRIBUTE = "anomaly-mask-ref"


@blueprint.get("/projects/<project>/datasets/<dataset_type>/mask")
def mask_editor_page(project: str, dataset_type: str) -> str:
    """The editor for the image ``?ref=<source-ref>``, its saved mask loaded for further editing."""
    ref = request.args.get("ref", "")
    entries = datasets.list_entries(backend(), project, dataset_type)
    entry = next((e for e in entries if e.source_ref == ref), None)
    if entry is None:
        raise ResourceNotFoundException(f"The {dataset_type} dataset of project {project} has no image {ref}.")
    following = _next_unlabelled(entries, ref)
    return render_template(
        "mask.html", project_name=project, dataset_type=dataset_type, title=ref.rsplit("/", 1)[-1], source_ref=ref,
        label=entry.label, mask_ref=entry.mask_ref,
        labels=[{"name": name, "colour": colour} for name, colour in entry.label_colors.items()],
        max_labels=MAX_MASK_LABELS, reserved=RESERVED_HEX,
        dataset_url=url_for("console.dataset_page", project=project, dataset_type=dataset_type),
        next_url=url_for("console.mask_editor_page", project=project, dataset_type=dataset_type,
                         ref=following.source_ref) if following else None)


@blueprint.post("/projects/<project>/datasets/<dataset_type>/mask")
def save_mask(project: str, dataset_type: str) -> Response:
    """Store the drawn mask (form fields ``ref``, ``labels`` as JSON, file ``mask``) and label the image
    with it. A mask with nothing drawn removes the image's mask and keeps its label."""
    ref = request.form.get("ref", "")
    entry = find_entries(backend(), project, dataset_type, [ref]).get(ref)
    if entry is None:
        raise ResourceNotFoundException(f"The {dataset_type} dataset of project {project} has no image {ref}.")
    labels = _labels(request.form.get("labels", ""))
    upload = request.files.get("mask")
    if upload is None:
        raise ValidationException("Send the drawn mask as the PNG file field 'mask'.")
    pixels = _mask_pixels(upload.read(), labels, _image_size(ref))
    used = {name: colour for name, colour in labels.items() if np.any(pixels == int(colour[1:], 16))}
    line = _segmentation_line(entry, _store(project, dataset_type, ref, pixels), used) if used else \
        _without_mask(dict(entry.line), entry)
    put_lines(backend(), project, dataset_type, [line])
    return jsonify(saved=True, mask_ref=line.get(MASK_ATTRIBUTE), labels=used)


def _labels(text: str) -> dict[str, str]:
    """The form's labels (``[{"name", "colour"}]``) as name -> ``#RRGGBB``, checked as the service's
    manifests are: named, own colours, at most MAX_MASK_LABELS."""
    try:
        items = json.loads(text or "[]")
    except json.JSONDecodeError:
        raise ValidationException("labels must be a JSON list of {name, colour} objects.") from None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ValidationException("labels must be a JSON list of {name, colour} objects.")
    if len(items) > MAX_MASK_LABELS:
        raise ValidationException(f"A mask may have at most {MAX_MASK_LABELS} anomaly labels, not {len(items)}.")
    labels: dict[str, str] = {}
    for item in items:
        name, colour = str(item.get("name", "")).strip(), str(item.get("colour", "")).upper()
        if not name or name.upper() == BACKGROUND:
            raise ValidationException(f"An anomaly label needs a name other than {BACKGROUND}; got {name!r}.")
        if len(colour) != 7 or colour[0] != "#" or any(c not in "0123456789ABCDEF" for c in colour[1:]):
            raise ValidationException(f"The label {name!r} has colour {colour!r}; expected the form #RRGGBB.")
        if colour in RESERVED_HEX:
            raise ValidationException(f"The label {name!r} cannot be {colour}: white and black mean no anomaly.")
        if name in labels or colour in labels.values():
            raise ValidationException(f"Each anomaly label needs its own name and colour ({name!r}, {colour}).")
        labels[name] = colour
    return labels


def _image_size(ref: str) -> tuple[int, int]:
    """(width, height) of the dataset image, which the mask must match."""
    bucket, key = parse_s3_uri(ref)
    try:
        size: tuple[int, int] = decode_image(backend().objects.get(bucket, key), ref).size
    except ObjectNotFound:
        raise ResourceNotFoundException(f"The image {ref} is no longer in S3, so its mask cannot be checked; "
                                        "remove it from the dataset or put it back.") from None
    except ImageError as bad:
        raise ValidationException(str(bad)) from None
    return size


def _mask_pixels(data: bytes, labels: dict[str, str], size: tuple[int, int]) -> np.ndarray:
    """The drawn PNG as 0xRRGGBB integers, refused unless it is `size` and only white and label colours."""
    try:
        image = as_rgb(decode_image(data, "the drawn mask", ("PNG",)))
    except ImageError as bad:
        raise ValidationException(str(bad)) from None
    if image.size != size:
        raise ValidationException(f"The mask is {image.size[0]}x{image.size[1]} pixels; the image is "
                                  f"{size[0]}x{size[1]}.")
    packed = pack_rgb(np.asarray(image))
    allowed = [int(colour[1:], 16) for colour in (BACKGROUND_HEX, *labels.values())]
    stray = packed[~np.isin(packed, allowed)]
    if stray.size:
        raise ValidationException(f"The mask has {stray.size} pixels in colours that are no label's, such as "
                                  f"#{int(stray[0]):06X}.")
    return packed


def _store(project: str, dataset_type: str, ref: str, packed: np.ndarray) -> str:
    """Write the mask to the console bucket; its S3 URI.

    The key holds a digest of the pixels, so a save never overwrites the PNG the dataset names now:
    if the dataset update fails, the stored line still matches its mask."""
    rgb = np.stack([(packed >> shift) & 0xFF for shift in (16, 8, 0)], axis=-1).astype(np.uint8)
    data = encode_rgb(rgb)
    stem = ref.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    key = (f"masks/{project}/{dataset_type}/{stem}-{hashlib.sha256(ref.encode()).hexdigest()[:8]}"
           f"-{hashlib.sha256(data).hexdigest()[:12]}.png")
    bucket = console_bucket(backend())
    backend().objects.put(bucket, key, data, CONTENT_TYPES["PNG"])
    return s3_uri(bucket, key)


def _segmentation_line(entry: ManifestLine, mask_ref: str, used: dict[str, str]) -> dict[str, Any]:
    """`entry` as an anomaly whose mask is `mask_ref` with the labels `used`, in Ground Truth's fields."""
    line = _without_mask(labelled_line(entry, entry.source_ref, "anomaly"), entry)
    line[MASK_ATTRIBUTE] = mask_ref
    colour_map = {"0": {"class-name": BACKGROUND, "hex-color": BACKGROUND_HEX.lower()}}
    for index, (name, colour) in enumerate(used.items(), start=1):
        colour_map[str(index)] = {"class-name": name, "hex-color": colour.lower()}
    line[f"{MASK_ATTRIBUTE}-metadata"] = {
        "internal-color-map": colour_map, "type": SEGMENTATION_TYPE, "human-annotated": "yes",
        "creation-date": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"), "job-name": CONSOLE_JOB}
    return line


def _without_mask(line: dict[str, Any], entry: ManifestLine) -> dict[str, Any]:
    """`line` without `entry`'s mask attribute (whatever its name) and that attribute's metadata."""
    names = [name for name, value in line.items() if entry.mask_ref is not None and value == entry.mask_ref]
    return {name: value for name, value in line.items()
            if name not in names and name not in {f"{n}-metadata" for n in names}}


def _next_unlabelled(entries: Sequence[ManifestLine], ref: str) -> ManifestLine | None:
    """The next image after `ref` (in natural file-name order, wrapping round) that still needs a
    person: unlabelled, or an anomaly without a mask."""
    ordered = sorted(entries, key=lambda e: natural_key(e.source_ref))
    here = next(i for i, e in enumerate(ordered) if e.source_ref == ref)
    return next((e for e in ordered[here + 1:] + ordered[:here]
                 if e.label is None or (e.label == "anomaly" and e.mask_ref is None)), None)
