"""Ground Truth manifest parsing (emulator.formats.manifests): what each JSON line means, and every refusal."""
from __future__ import annotations

import json
from typing import Any

import pytest

from emulator.formats.manifests import (
    MAX_LINE_CHARS,
    ManifestError,
    parse_line,
    parse_lines,
    parse_manifest,
    read_json_lines,
)
from tests.shared_datasets import COOKIES_DIR

CLASSIFICATION = "groundtruth/image-classification"
SEGMENTATION = "groundtruth/semantic-segmentation"


def classified(class_name: str, attribute: str = "anomaly-label", value: Any = 1, **extra: Any) -> dict[str, Any]:
    return {"source-ref": "s3://bucket/a.png", attribute: value,
            f"{attribute}-metadata": {"class-name": class_name, "type": CLASSIFICATION, **extra}}


def with_mask(color_map: dict[str, Any], line: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**(line or classified("anomaly")), "anomaly-mask-ref": "s3://bucket/a-mask.png",
            "anomaly-mask-ref-metadata": {"internal-color-map": color_map, "type": SEGMENTATION}}


def colors(**names: str) -> dict[str, Any]:
    return {str(i): {"class-name": name, "hex-color": color, "confidence": 0.0}
            for i, (name, color) in enumerate(names.items())}


def refusal(value: Any, number: int = 7) -> str:
    with pytest.raises(ManifestError) as err:
        parse_line(value, number)
    assert err.value.line == number
    assert str(err.value).startswith(f"line {number}: ")
    return err.value.reason


# --- classification ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("attribute", "value", "class_name", "label", "stored"), [
    ("anomaly-label", 1, "anomaly", "anomaly", 1),
    ("anomaly-label", 0, "normal", "normal", 0),
    ("auto-label", 1, "normal", "normal", 0),  # AWS's workshop: 1 means normal there; class-name wins
    ("auto-label", 0, "anomaly", "anomaly", 1),
    ("my-own-name", "whatever", "anomaly", "anomaly", 1),
])
def test_the_class_comes_from_class_name(attribute: str, value: Any, class_name: str, label: str,
                                         stored: int) -> None:
    entry = parse_line(classified(class_name, attribute, value, confidence=0.3, **{"job-name": "j"}), 1)
    assert entry.source_ref == "s3://bucket/a.png"
    assert entry.label == label
    assert entry.line[attribute] == stored
    assert entry.line[f"{attribute}-metadata"] == {"class-name": class_name, "type": CLASSIFICATION,
                                                    "confidence": 0.3, "job-name": "j"}
    assert entry.mask_ref is None and entry.label_colors == {}


@pytest.mark.parametrize("class_name", ["Normal", "defect", ""])
def test_other_class_names_are_imported_unlabelled(class_name: str) -> None:
    entry = parse_line(classified(class_name, value=5), 1)
    assert entry.label is None
    assert entry.line["anomaly-label"] == 5  # nothing to normalise


def test_a_line_with_only_source_ref_is_unlabelled() -> None:
    entry = parse_line({"source-ref": "s3://bucket/dir/x.jpg"}, 1)
    assert (entry.label, entry.mask_ref, entry.line) == (None, None, {"source-ref": "s3://bucket/dir/x.jpg"})


def test_parse_line_does_not_modify_its_input() -> None:
    line = classified("normal", "auto-label", 1)
    parse_line(line, 1)
    assert line["auto-label"] == 1


@pytest.mark.parametrize(("value", "reason"), [
    ([], "must be an object"),
    ({"anomaly-label": 1}, "no source-ref"),
    ({"source-ref": 12}, "not an S3 URI"),
    ({"source-ref": "https://bucket.s3.amazonaws.com/a.png"}, "not an S3 URI"),
    ({"source-ref": "s3://bucket-only/"}, "not an S3 URI"),
    ({"source-ref": "images/a.png"}, "Prefix relative paths"),
    ({"source-ref": "s3://b/a.png", "anomaly-label-metadata": {"type": CLASSIFICATION}}, "no anomaly-label attribute"),
    ({"source-ref": "s3://b/a.png", "x": 1, "x-metadata": {"type": CLASSIFICATION}}, "no class-name"),
    ({"source-ref": "s3://b/a.png", "x": 1, "x-metadata": {"type": CLASSIFICATION, "class-name": 1}},
     "no class-name"),
    ({"source-ref": "s3://b/a.png", "x": 1, "x-metadata": {"class-name": "normal"}}, CLASSIFICATION),
    ({**classified("normal"), "y": 1, "y-metadata": {"type": CLASSIFICATION, "class-name": "anomaly"}},
     "may have only one"),
    ({**classified("normal"), "note": "x" * MAX_LINE_CHARS}, f"at most {MAX_LINE_CHARS}"),
])
def test_refused_lines(value: Any, reason: str) -> None:
    assert reason in refusal(value)


# --- segmentation -----------------------------------------------------------------------------------

def test_documented_segmentation_line() -> None:
    entry = parse_line(with_mask(colors(BACKGROUND="#ffffff", scratch="#2ca02c", dent="#1F77B4")), 1)
    assert entry.label == "anomaly"
    assert entry.mask_ref == "s3://bucket/a-mask.png"
    assert entry.label_colors == {"scratch": "#2CA02C", "dent": "#1F77B4"}


def test_segmentation_without_background_entry_and_with_free_attribute_names() -> None:
    line = {**classified("anomaly"), "defect-ref": "s3://bucket/m.png",
            "defect-ref-metadata": {"internal-color-map": colors(cracked="#23A436"), "type": SEGMENTATION}}
    entry = parse_line(line, 1)
    assert entry.mask_ref == "s3://bucket/m.png"
    assert entry.label_colors == {"cracked": "#23A436"}


def test_a_label_may_repeat_with_the_same_colour_and_twenty_labels_are_allowed() -> None:
    repeated = {"0": {"class-name": "dent", "hex-color": "#010203"}, "1": {"class-name": "dent",
                                                                         "hex-color": "#010203"}}
    assert parse_line(with_mask(repeated), 1).label_colors == {"dent": "#010203"}
    twenty = {str(i): {"class-name": f"d{i}", "hex-color": f"#0000{i:02X}"} for i in range(20)}
    assert len(parse_line(with_mask({"bg": {"class-name": "background", "hex-color": "#FFFFFF"}, **twenty}),
                          1).label_colors) == 20


@pytest.mark.parametrize(("value", "reason"), [
    ({**classified("anomaly"), "anomaly-mask-ref": "s3://b/m.png"}, "no anomaly-mask-ref-metadata"),
    ({**with_mask(colors(dent="#010203")), "anomaly-mask-ref": "masks/m.png"}, "not an S3 URI"),
    (with_mask({}), "internal-color-map"),
    (with_mask([]), "internal-color-map"),  # type: ignore[arg-type]
    (with_mask({"0": {"hex-color": "#010203"}}), "needs a class-name"),
    (with_mask({"0": "dent"}), "needs a class-name"),
    (with_mask(colors(dent="red")), "#RRGGBB"),
    (with_mask(colors(dent="#12345")), "#RRGGBB"),
    (with_mask({"0": {"class-name": "dent", "hex-color": "#010203"},
                "1": {"class-name": "dent", "hex-color": "#040506"}}), "two colours"),
    (with_mask(colors(dent="#010203", scratch="#010203")), "share the colour"),
    (with_mask({str(i): {"class-name": f"d{i}", "hex-color": f"#0000{i:02X}"} for i in range(21)}), "at most 20"),
    ({**with_mask(colors(dent="#010203")), "other-ref": "s3://b/o.png",
      "other-ref-metadata": {"internal-color-map": colors(x="#111111"), "type": SEGMENTATION}}, "may have only one"),
])
def test_refused_segmentation_lines(value: Any, reason: str) -> None:
    assert reason in refusal(value)


# --- whole manifests --------------------------------------------------------------------------------

def test_read_json_lines_numbers_lines_as_an_editor_does() -> None:
    data = "\ufeff" + json.dumps({"source-ref": "s3://b/1.png"}) + "\r\n\n   \n" + json.dumps({"source-ref": "s3://b/2.png"})
    assert read_json_lines(data.encode()) == [(1, {"source-ref": "s3://b/1.png"}), (4, {"source-ref": "s3://b/2.png"})]


@pytest.mark.parametrize(("data", "line", "reason"), [
    (b'{"source-ref": "s3://b/1.png"}\n{"source-ref": s3://b/2.png}', 2, "not valid JSON"),
    (b'{"source-ref": "s3://b/1.png"}\n\n{"source-ref": "s3://b/\xe9.png"}', 3, "UTF-8"),
])
def test_unreadable_manifests(data: bytes, line: int, reason: str) -> None:
    with pytest.raises(ManifestError) as err:
        read_json_lines(data)
    assert err.value.line == line and reason in err.value.reason


def test_each_image_once() -> None:
    lines = [(1, {"source-ref": "s3://b/1.png"}), (2, {"source-ref": "s3://b/2.png"}),
             (5, classified("normal") | {"source-ref": "s3://b/1.png"})]
    with pytest.raises(ManifestError) as err:
        parse_lines(lines)
    assert err.value.line == 5 and "already appears on line 1" in err.value.reason
    assert [n for n, _ in parse_lines(lines[:2])] == [1, 2]


def test_an_empty_manifest_is_refused() -> None:
    with pytest.raises(ManifestError) as err:
        parse_manifest(b"\n \n")
    assert err.value.line is None and "no JSON lines" in str(err.value)


@pytest.mark.slow
def test_the_cookies_template_once_its_paths_are_prefixed() -> None:
    template = COOKIES_DIR / "dataset-files" / "manifests" / "template.manifest"
    if not template.exists():
        pytest.skip(f"the shared cookies dataset is not at {COOKIES_DIR}")
    data = template.read_bytes()
    with pytest.raises(ManifestError) as err:
        parse_manifest(data)
    assert err.value.line == 1 and "Prefix relative paths" in err.value.reason
    prefixed = [(n, {k: f"s3://bucket/cookies/{v}" if k in ("source-ref", "anomaly-mask-ref") else v
                     for k, v in line.items()}) for n, line in read_json_lines(data)]
    entries = [entry for _, entry in parse_lines(prefixed)]
    assert len(entries) == 63
    assert sum(e.label == "normal" for e in entries) == 31
    anomalies = [e for e in entries if e.label == "anomaly"]
    assert len(anomalies) == 32
    assert all(e.mask_ref and e.label_colors == {"cracked": "#23A436"} for e in anomalies)
