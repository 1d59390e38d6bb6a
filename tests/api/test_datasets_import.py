"""Manifest imports that must fail: CREATE_FAILED with a StatusMessage naming the line and the reason."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.api.datasets_support import OTHER_BUCKET, DatasetKit, error_of, image_bytes, labelled, mask_bytes, segmented

# A case stages its files and returns the manifest content and the fragments the StatusMessage must contain.
Case = Callable[[DatasetKit], tuple[bytes | list[dict[str, Any]], list[str]]]


def _bad_json(kit: DatasetKit) -> Any:
    good = json.dumps(labelled(kit.images(1)[0], "normal")).encode()
    return good + b"\n\n" + b'{"source-ref": "s3://x/y.png",', ["line 3:", "not valid JSON"]


def _no_source_ref(kit: DatasetKit) -> Any:
    return [{"anomaly-label": 1}], ["line 1:", "no source-ref"]


def _relative_source_ref(kit: DatasetKit) -> Any:
    return [labelled("training-images/anomaly-1.jpg", "anomaly")], ["line 1:", "not an S3 URI", "Prefix"]


def _missing_image(kit: DatasetKit) -> Any:
    ref = kit.images(1)[0]
    return [labelled(ref, "normal"), labelled(ref + ".missing", "normal")], \
        ["line 2:", f"{ref}.missing", "does not exist"]


def _not_an_image(kit: DatasetKit) -> Any:
    ref = kit.put("notes.png", b"GIF89a definitely not a png")
    return [labelled(ref, "normal")], ["line 1:", ref, "not a PNG or JPEG image"]


def _too_small(kit: DatasetKit) -> Any:
    ref = kit.put("tiny.png", image_bytes((63, 64)))
    return [labelled(ref, "normal")], ["line 1:", "63x64", "between 64 and 4096"]


def _too_large(kit: DatasetKit) -> Any:
    ref = kit.put("wide.png", image_bytes((4097, 64)))
    return [labelled(ref, "normal")], ["line 1:", "4097x64", "between 64 and 4096"]


def _over_8_mb(kit: DatasetKit) -> Any:
    ref = kit.put("huge.png", image_bytes() + b"\0" * (8 * 1024 * 1024))
    return [labelled(ref, "normal")], ["line 1:", "at most 8388608 bytes"]


def _truncated(kit: DatasetKit) -> Any:
    ref = kit.put("cut.png", image_bytes((128, 128), color=(1, 2, 3))[:-60])
    return [labelled(ref, "normal")], ["line 1:", "corrupt or truncated"]


def _mixed_dimensions(kit: DatasetKit) -> Any:
    first = kit.put("a.png", image_bytes((64, 64)))
    second = kit.put("b.png", image_bytes((64, 80)))
    return [labelled(first, "normal"), labelled(second, "normal")], \
        ["line 2:", "64x80", "same dimensions", first]


def _missing_mask(kit: DatasetKit) -> Any:
    ref = kit.images(1)[0]
    return [segmented(ref, ref + "-mask.png", {"crack": "#ff0000"})], ["line 1:", "mask image", "does not exist"]


def _mask_size(kit: DatasetKit) -> Any:
    ref = kit.images(1)[0]
    mask = kit.put("small-mask.png", mask_bytes((64, 70)))
    return [segmented(ref, mask, {"crack": "#23A436"})], ["line 1:", "64x70", "must match"]


def _jpeg_mask(kit: DatasetKit) -> Any:
    ref = kit.images(1)[0]
    mask = kit.put("mask.png", mask_bytes(fmt="JPEG"))
    return [segmented(ref, mask, {"crack": "#23A436"})], ["line 1:", "not a PNG image"]


def _mask_without_color_map(kit: DatasetKit) -> Any:
    line = segmented(kit.images(1)[0], "s3://b/m.png", {"crack": "#23A436"})
    del line["anomaly-mask-ref-metadata"]["internal-color-map"]
    return [line], ["line 1:", "internal-color-map"]


def _too_many_mask_labels(kit: DatasetKit) -> Any:
    colors = {f"defect-{i}": f"#0000{i:02x}" for i in range(21)}
    return [segmented(kit.images(1)[0], "s3://b/m.png", colors)], ["line 1:", "21 anomaly labels", "at most 20"]


def _too_many_project_labels(kit: DatasetKit) -> Any:
    lines = [segmented(f"s3://b/{n}.png", f"s3://b/{n}-mask.png",
                       {f"defect-{n}-{i}": f"#00{n:02x}{i:02x}" for i in range(20)}) for n in range(6)]
    return lines, ["120 anomaly labels", "at most 100"]


def _duplicate_image(kit: DatasetKit) -> Any:
    ref = kit.images(1)[0]
    return [labelled(ref, "normal"), labelled(ref, "anomaly")], ["line 2:", "already appears on line 1"]


def _two_buckets(kit: DatasetKit) -> Any:
    ref = kit.images(1)[0]
    other = kit.put("elsewhere.png", image_bytes(), bucket=OTHER_BUCKET)
    return [labelled(ref, "normal"), labelled(other, "normal")], ["line 2:", OTHER_BUCKET, "one bucket"]


def _label_of_the_wrong_type(kit: DatasetKit) -> Any:
    line = labelled(kit.images(1)[0], "anomaly")
    line["anomaly-label-metadata"]["type"] = "groundtruth/object-detection"
    return [line], ["line 1:", "groundtruth/image-classification"]


def _not_utf8(kit: DatasetKit) -> Any:
    good = json.dumps(labelled(kit.images(1)[0], "normal")).encode()
    return good + b'\n{"source-ref": "s3://b/\xff.png"}', ["line 2:", "UTF-8"]


def _empty_manifest(kit: DatasetKit) -> Any:
    return b"\n  \n", ["no JSON lines"]


def _line_too_long(kit: DatasetKit) -> Any:
    line = labelled(kit.images(1)[0], "normal")
    line["note"] = "x" * 8200
    return [line], ["line 1:", "at most 8192"]


CASES: list[Case] = [
    _bad_json, _no_source_ref, _relative_source_ref, _missing_image, _not_an_image, _too_small, _too_large,
    _over_8_mb, _truncated, _mixed_dimensions, _missing_mask, _mask_size, _jpeg_mask, _mask_without_color_map,
    _too_many_mask_labels, _too_many_project_labels, _duplicate_image, _two_buckets, _label_of_the_wrong_type,
    _not_utf8, _empty_manifest, _line_too_long,
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__.strip("_"))
def test_invalid_manifest_fails_the_import(kit: DatasetKit, case: Case) -> None:
    content, expected = case(kit)
    described = kit.create("train", content)
    assert described["Status"] == "CREATE_FAILED"
    for fragment in expected:
        assert fragment in described["StatusMessage"], described["StatusMessage"]
    assert described["ImageStats"] == {"Total": 0, "Labeled": 0, "Normal": 0, "Anomaly": 0}
    assert kit.entries() == []


def test_missing_manifest_fails_the_import(kit: DatasetKit) -> None:
    kit.lookout.create_dataset(ProjectName=kit.project, DatasetType="train", DatasetSource={
        "GroundTruthManifest": {"S3Object": {"Bucket": "lookout-dataset-tests", "Key": kit.prefix + "nope"}}})
    described = kit.wait("train")
    assert described["Status"] == "CREATE_FAILED"
    assert f"s3://lookout-dataset-tests/{kit.prefix}nope" in described["StatusMessage"]
    assert "can't read the manifest" in described["StatusMessage"]


@pytest.mark.parametrize(("dataset_type", "limit"), [("train", 16_000), ("test", 4_000)])
def test_image_count_quota(kit: DatasetKit, dataset_type: str, limit: int) -> None:
    lines = [{"source-ref": f"s3://lookout-dataset-tests/img-{i}.png"} for i in range(limit + 1)]
    described = kit.create(dataset_type, lines)
    assert described["Status"] == "CREATE_FAILED"
    assert f"{limit + 1} images" in described["StatusMessage"]
    assert f"at most {limit}" in described["StatusMessage"]


def test_a_failed_dataset_can_only_be_deleted_and_recreated(kit: DatasetKit) -> None:
    assert kit.create("train", [{"anomaly-label": 1}])["Status"] == "CREATE_FAILED"
    with pytest.raises(ClientError) as err:
        kit.lookout.update_dataset_entries(ProjectName=kit.project, DatasetType="train",
                                           Changes=json.dumps(labelled(kit.images(1)[0], "normal")).encode())
    code, status, message = error_of(err)
    assert (code, status) == ("ConflictException", 409)
    assert "delete it" in message
    with pytest.raises(ClientError) as err:
        kit.create("train")
    assert error_of(err)[0] == "ConflictException"
    kit.lookout.delete_dataset(ProjectName=kit.project, DatasetType="train")
    assert kit.create("train", [labelled(kit.images(1)[0], "normal")])["Status"] == "CREATE_COMPLETE"


def test_images_of_the_test_dataset_must_match_the_training_images(kit: DatasetKit) -> None:
    kit.create("train", [labelled(kit.put("train.png", image_bytes((64, 64))), "normal")])
    described = kit.create("test", [labelled(kit.put("test.png", image_bytes((72, 64))), "normal")])
    assert described["Status"] == "CREATE_FAILED"
    assert "72x64" in described["StatusMessage"] and "same dimensions" in described["StatusMessage"]
