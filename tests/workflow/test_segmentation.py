"""client_examples/segmentation.py: a segmentation model from a manifest with masks, and its masks drawn."""
from __future__ import annotations

import json

import boto3
import pytest
from PIL import Image

from emulator.mock import mock_lookoutvision
from tests.workflow.examples import import_example, python_example
from tests.workflow.synthetic import CRACK_COLOUR, write_cookies_layout

segmentation = import_example("segmentation")

BACKGROUND = {"Name": "background", "PixelAnomaly": {"TotalPercentageArea": 0.98, "Color": "#FFFFFF"}}
CRACKED = {"Name": "cracked", "PixelAnomaly": {"TotalPercentageArea": 0.02, "Color": "#23A436"}}


@pytest.mark.slow
def test_segmentation_trains_hosts_and_writes_masks_and_overlays(tmp_path):
    # The minimum single-dataset project: 20 normal and 20 anomaly images with one anomaly label.
    data = write_cookies_layout(tmp_path / "data", normal=20, anomaly=20, test=4)
    dataset_files = sorted(p for p in data.rglob("*"))
    output = tmp_path / "output"
    with mock_lookoutvision():  # a server of its own, as a user's test would have
        out = python_example("segmentation.py", "--data", str(data), "--output", str(output),
                             "--project", "cookies", "--bucket", "cookies", "--poll-interval", "0.2")
        model = boto3.client("lookoutvision").describe_model(ProjectName="cookies", ModelVersion="1")
    assert model["ModelDescription"]["Status"] == "TRAINED"  # stopped again after detection

    tests = sorted(p.stem for p in (data / "test-images").iterdir())
    assert sorted(p.name for p in output.iterdir()) == sorted(f"{t}.{kind}.png" for t in tests
                                                              for kind in ("mask", "overlay"))
    for name in tests:
        with Image.open(data / "test-images" / f"{name}.jpg") as original, \
                Image.open(output / f"{name}.overlay.png") as drawn:
            assert drawn.size == original.size
    assert "cracked" in out and "model 1: HOSTED" in out
    assert sorted(p for p in data.rglob("*")) == dataset_files  # the dataset is only read


def test_overlay_paints_each_anomaly_in_its_label_colour_and_nothing_else():
    image = Image.new("RGB", (8, 8), (100, 100, 100))
    mask = Image.new("RGB", (4, 4), (255, 255, 255))  # the service's mask may be smaller: scaled up
    mask.putpixel((1, 1), CRACK_COLOUR)
    drawn = segmentation.overlay(image, mask, [BACKGROUND, CRACKED])
    painted = drawn.getpixel((2, 2))
    assert painted != (100, 100, 100)
    assert painted[1] > painted[0] and painted[1] > painted[2]  # towards the label's green
    assert drawn.getpixel((3, 3)) == painted and drawn.getpixel((0, 0)) == (100, 100, 100)
    assert drawn.getpixel((4, 4)) == (100, 100, 100)  # background colour is never painted


def test_anomalies_are_listed_without_the_background_and_with_their_area_in_percent():
    assert segmentation.describe_anomalies({"Anomalies": [BACKGROUND, CRACKED]}) == "cracked 2.0%"
    assert segmentation.describe_anomalies({"Anomalies": [BACKGROUND]}) == "no anomalous area"


def test_manifest_references_are_prefixed_and_every_referenced_file_uploaded(tmp_path):
    data = write_cookies_layout(tmp_path, normal=2, anomaly=2, test=1)
    lines, uploads = segmentation.prefixed_manifest(data / "dataset-files" / "manifests" / "template.manifest",
                                                    lambda key: f"s3://bucket/prefix/{key}")
    entries = [json.loads(line) for line in lines]
    assert entries[-1]["source-ref"] == "s3://bucket/prefix/training-images/anomaly-2.jpg"
    assert entries[-1]["anomaly-mask-ref"] == "s3://bucket/prefix/mask-images/anomaly-2.png"
    assert entries[-1]["anomaly-label-metadata"]["class-name"] == "anomaly"  # the rest is kept
    assert sorted(key for _, key in uploads) == ["mask-images/anomaly-1.png", "mask-images/anomaly-2.png",
                                                 "training-images/anomaly-1.jpg", "training-images/anomaly-2.jpg",
                                                 "training-images/normal-1.jpg", "training-images/normal-2.jpg"]
    assert all(path.is_file() for path, _ in uploads)


def test_a_manifest_naming_a_missing_file_is_refused_with_its_line(tmp_path):
    data = write_cookies_layout(tmp_path, normal=1, anomaly=1, test=1)
    (data / "dataset-files" / "mask-images" / "anomaly-1.png").unlink()
    with pytest.raises(SystemExit, match=r"template.manifest:2: anomaly-mask-ref 'mask-images/anomaly-1.png'"):
        segmentation.prefixed_manifest(data / "dataset-files" / "manifests" / "template.manifest", str)
