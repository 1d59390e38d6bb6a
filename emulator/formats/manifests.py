"""SageMaker Ground Truth manifests as Lookout for Vision reads them (classification and segmentation).

A manifest is UTF-8 JSON Lines, one image per line. What a line means is decided by its metadata,
never by attribute names, because real manifests name their attributes freely:

- the *label attribute* is the one whose ``<attribute>-metadata`` has ``type``
  ``groundtruth/image-classification``; its ``class-name`` says ``normal`` or ``anomaly`` (any other
  class name makes the image unlabelled, as the developer guide specifies) and the attribute's own
  value is ignored (AWS's workshop uses ``auto-label: 1`` for normal images);
- the *mask attribute* is the one whose metadata has ``type`` ``groundtruth/semantic-segmentation``;
  its value is the S3 URI of a PNG mask and ``internal-color-map`` maps colours to anomaly labels.
  A ``BACKGROUND`` entry is optional (the getting-started manifest has none).

Only what gives a line its meaning is checked here (source-ref, label, mask, colour map); fields LFV
documents as unused (confidence, job-name, human-annotated, creation-date) are kept as given. The
checks that need S3 (the images exist, formats, dimensions) belong to the dataset import.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from emulator.formats import jsontext
from emulator.s3.uri import split_s3_uri

CLASSIFICATION_TYPE = "groundtruth/image-classification"
SEGMENTATION_TYPE = "groundtruth/semantic-segmentation"
LABELS = ("normal", "anomaly")
BACKGROUND = "BACKGROUND"
MAX_MASK_LABELS = 20  # limits.md: anomaly labels on one mask image
MAX_LINE_CHARS = 8192  # the service model's DatasetEntry: ListDatasetEntries cannot return longer lines
_METADATA = "-metadata"
_HEX_COLOR = re.compile(r"#[0-9a-fA-F]{6}")


class ManifestError(ValueError):
    """A manifest (or a batch of JSON lines) that cannot be imported; `line` is 1-based, None for the whole file."""

    def __init__(self, line: int | None, reason: str) -> None:
        super().__init__(f"line {line}: {reason}" if line is not None else reason)
        self.line = line
        self.reason = reason


@dataclass(frozen=True)
class ManifestLine:
    """The meaning of one JSON line. `line` is the JSON object as the dataset stores and lists it."""

    source_ref: str
    label: str | None  # "normal", "anomaly" or None (unlabelled)
    mask_ref: str | None
    label_colors: dict[str, str]  # anomaly label -> "#RRGGBB", BACKGROUND excluded
    line: dict[str, Any]

    @property
    def text(self) -> str:
        return serialize(self.line)


def serialize(line: dict[str, Any]) -> str:
    """The compact one-line JSON form a dataset entry is stored and listed in."""
    return json.dumps(line, separators=(",", ":"), ensure_ascii=False)


def read_json_lines(data: bytes) -> list[tuple[int, Any]]:
    """Decode JSON Lines into (line number, value) pairs, skipping blank lines.

    Line numbers are those an editor shows, so an error message leads straight to the culprit.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(data[:exc.start].count(b"\n") + 1, "the text is not valid UTF-8 (manifests must be "
                            "UTF-8 encoded).") from None
    values = []
    for number, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            values.append((number, jsontext.loads(raw)))
        except jsontext.JSONTextError as exc:
            raise ManifestError(number, str(exc)) from None
        except json.JSONDecodeError as exc:
            raise ManifestError(number, f"not valid JSON ({exc.msg} at column {exc.colno}).") from None
    return values


def parse_lines(numbered: Iterable[tuple[int, Any]]) -> list[tuple[int, ManifestLine]]:
    """Interpret numbered JSON values; each source-ref may appear once."""
    parsed: list[tuple[int, ManifestLine]] = []
    first_seen: dict[str, int] = {}
    for number, value in numbered:
        entry = parse_line(value, number)
        if entry.source_ref in first_seen:
            raise ManifestError(number, f"source-ref {entry.source_ref} already appears on line "
                                f"{first_seen[entry.source_ref]}; list each image once.")
        first_seen[entry.source_ref] = number
        parsed.append((number, entry))
    return parsed


def parse_manifest(data: bytes) -> list[tuple[int, ManifestLine]]:
    """A whole manifest file: at least one JSON line, each valid, no image twice."""
    parsed = parse_lines(read_json_lines(data))
    if not parsed:
        raise ManifestError(None, "the manifest contains no JSON lines.")
    return parsed


def parse_line(value: Any, number: int) -> ManifestLine:
    """Interpret one JSON line; raise ManifestError naming `number` and the problem."""
    if not isinstance(value, dict):
        raise ManifestError(number, f"a JSON line must be an object, not {type(value).__name__}.")
    source_ref = value.get("source-ref")
    if source_ref is None:
        raise ManifestError(number, "there is no source-ref (the s3://bucket/key location of the image).")
    _require_s3_uri(source_ref, "source-ref", number)
    line = dict(value)
    label = _read_label(line, number)
    mask_ref, label_colors = _read_mask(line, number)
    entry = ManifestLine(source_ref=source_ref, label=label, mask_ref=mask_ref, label_colors=label_colors, line=line)
    if len(entry.text) > MAX_LINE_CHARS:
        raise ManifestError(number, f"the JSON line is {len(entry.text)} characters long; a dataset entry may be "
                            f"at most {MAX_LINE_CHARS}.")
    return entry


def _require_s3_uri(value: Any, name: str, number: int) -> None:
    if split_s3_uri(value) is None:
        hint = " Prefix relative paths with the S3 location the files were uploaded to." \
            if isinstance(value, str) and not value.startswith("s3://") else ""
        raise ManifestError(number, f"{name} {value!r} is not an S3 URI of the form s3://bucket/key.{hint}")


def _attributes_of_type(line: dict[str, Any], kind: str) -> list[str]:
    """Attributes whose ``-metadata`` object declares `kind`."""
    return [key[:-len(_METADATA)] for key, meta in line.items()
            if key.endswith(_METADATA) and isinstance(meta, dict) and meta.get("type") == kind]


def _single_attribute(line: dict[str, Any], kind: str, number: int) -> str | None:
    found = _attributes_of_type(line, kind)
    if len(found) > 1:
        raise ManifestError(number, f"the attributes {', '.join(found)} all have {kind} metadata; a JSON line "
                            "may have only one.")
    if found and found[0] not in line:
        raise ManifestError(number, f"there is {found[0]}{_METADATA} but no {found[0]} attribute.")
    return found[0] if found else None


def _read_label(line: dict[str, Any], number: int) -> str | None:
    """The image's class, rewriting the label attribute to 1 (anomaly) / 0 (normal) as LFV's output does."""
    for key, meta in line.items():  # a class-name under a wrong type would otherwise be silently ignored
        if key.endswith(_METADATA) and isinstance(meta, dict) and "class-name" in meta \
                and meta.get("type") != CLASSIFICATION_TYPE:
            raise ManifestError(number, f"{key} has a class-name but its type is {meta.get('type')!r}; image "
                                f"labels need the type {CLASSIFICATION_TYPE}.")
    attribute = _single_attribute(line, CLASSIFICATION_TYPE, number)
    if attribute is None:
        return None
    class_name = line[attribute + _METADATA].get("class-name")
    if not isinstance(class_name, str):
        raise ManifestError(number, f"{attribute}{_METADATA} has no class-name (normal or anomaly).")
    if class_name not in LABELS:
        return None  # documented: any other class name imports the image unlabelled
    line[attribute] = 1 if class_name == "anomaly" else 0
    return class_name


def _read_mask(line: dict[str, Any], number: int) -> tuple[str | None, dict[str, str]]:
    attribute = _single_attribute(line, SEGMENTATION_TYPE, number)
    for key in line:
        if key.endswith("-ref") and key not in ("source-ref", attribute):
            raise ManifestError(number, f"{key} has no {key}{_METADATA} of type {SEGMENTATION_TYPE} with the "
                                "internal-color-map of its mask.")
    if attribute is None:
        return None, {}
    mask_ref = line[attribute]
    _require_s3_uri(mask_ref, attribute, number)
    color_map = line[attribute + _METADATA].get("internal-color-map")
    if not isinstance(color_map, dict) or not color_map:
        raise ManifestError(number, f"{attribute}{_METADATA} needs an internal-color-map object that maps each "
                            "anomaly label to its mask colour.")
    return mask_ref, _label_colors(color_map, attribute, number)


def _label_colors(color_map: dict[str, Any], attribute: str, number: int) -> dict[str, str]:
    colors: dict[str, str] = {}
    owners: dict[str, str] = {}
    for key, item in color_map.items():
        where = f"{attribute}{_METADATA}.internal-color-map[{key!r}]"
        if not isinstance(item, dict) or not isinstance(item.get("class-name"), str) or not item["class-name"]:
            raise ManifestError(number, f"{where} needs a class-name.")
        name, color = item["class-name"], item.get("hex-color")
        if not isinstance(color, str) or not _HEX_COLOR.fullmatch(color):
            raise ManifestError(number, f"{where} has hex-color {color!r}; expected the form #RRGGBB.")
        if name.upper() == BACKGROUND:
            continue
        color = color.upper()
        if colors.get(name, color) != color:
            raise ManifestError(number, f"the anomaly label {name!r} has two colours, {colors[name]} and {color}.")
        if owners.get(color, name) != name:
            raise ManifestError(number, f"the anomaly labels {owners[color]!r} and {name!r} share the colour "
                                f"{color}; each label needs its own colour.")
        colors[name], owners[color] = color, name
    if len(colors) > MAX_MASK_LABELS:
        raise ManifestError(number, f"the mask has {len(colors)} anomaly labels; a mask image may have at most "
                            f"{MAX_MASK_LABELS}.")
    return colors
