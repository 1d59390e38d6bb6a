#!/usr/bin/env python3
"""An image segmentation model from a Ground Truth manifest with anomaly masks, and its masks drawn.

Client: boto3 (AWS SDK for Python) >= 1.34 with ``pip install botocore-a-la-carte-lookoutvision``,
or boto3 <= 1.40.60; Pillow to draw the overlays.

1. upload the images and masks the manifest names, prefixing its relative ``source-ref`` and
   ``*-mask-ref`` paths with the project's S3 location;
2. create a project with a single dataset from it (the service sets a test split aside itself)
   and train: masks in the training data make it a segmentation model;
3. host the model and run DetectAnomalies over the test images; for each one save the returned
   AnomalyMask (``<image>.mask.png``) and the image with the anomalies painted over it in their
   label colours (``<image>.overlay.png``) in the output folder; then stop the model.

Data (``--data``): the getting-started cookies layout, ``dataset-files/manifests/template.manifest``
(paths relative to ``dataset-files/``) and ``test-images/``. It is only read: everything is written
to ``--output``.

Usage, with ``lookout-emulator serve`` running::

    python client_examples/segmentation.py --output segmentation-output
"""
from __future__ import annotations

import argparse
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lookout_project import CONTENT_TYPES, Project, example_parser, run_main
from PIL import Image, ImageChops

OVERLAY_OPACITY = 0.55


def prefixed_manifest(manifest: Path, uri: Callable[[str], str]) -> tuple[list[str], list[tuple[Path, str]]]:
    """The manifest's lines with relative paths made S3 URIs by `uri`, and the (file, key) uploads they need.

    Every top-level ``*-ref`` value is a file reference (``source-ref``, the mask attribute): the
    label attribute names are the labeller's choice, so they are not hard-coded.
    """
    lines, uploads = [], {}
    for number, text in enumerate(manifest.read_text().splitlines(), 1):
        if not text.strip():
            continue
        entry = json.loads(text)
        for attribute, value in entry.items():
            if attribute.endswith("-ref") and isinstance(value, str) and not value.startswith("s3://"):
                local = manifest.parent.parent / value
                if not local.is_file():
                    raise SystemExit(f"{manifest}:{number}: {attribute} {value!r} does not exist ({local})")
                uploads[value] = local
                entry[attribute] = uri(value)
        lines.append(json.dumps(entry))
    return lines, [(path, key) for key, path in uploads.items()]


def pixels_of_colour(mask: Image.Image, rgb: tuple[int, ...]) -> Image.Image:
    """A greyscale mask: 255 where `mask` has exactly the colour `rgb`, 0 elsewhere."""
    bands = [band.point(lambda value, want=want: 255 if value == want else 0)
             for band, want in zip(mask.split(), rgb)]
    return ImageChops.darker(ImageChops.darker(bands[0], bands[1]), bands[2])


def as_rgb(image: Image.Image) -> Image.Image:
    """`image` in RGB; a palette PNG with transparency goes through RGBA (Pillow warns otherwise)."""
    return (image.convert("RGBA") if image.mode == "P" and "transparency" in image.info else image).convert("RGB")


def overlay(image: Image.Image, mask: Image.Image, anomalies: list[dict[str, Any]]) -> Image.Image:
    """Paint every anomaly's mask pixels, in its label colour, over the image.

    Colours come from the result's Anomalies list, not from assumptions about the mask: the first
    entry is always the background, whatever colour the service gives it.
    """
    image, mask = as_rgb(image), as_rgb(mask).resize(image.size, Image.NEAREST)
    painted = image.copy()
    for anomaly in anomalies[1:]:
        colour = anomaly["PixelAnomaly"]["Color"]
        rgb = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
        painted.paste(Image.new("RGB", image.size, rgb), mask=pixels_of_colour(mask, rgb))
    return Image.blend(image, painted, OVERLAY_OPACITY)


def save_masks(result: dict[str, Any], image_path: Path, output: Path) -> Path | None:
    """Write the mask and overlay of one result; None when the model returned no mask."""
    if "AnomalyMask" not in result:
        return None
    mask_bytes = result["AnomalyMask"]  # a blob: boto3 has already decoded the base64 of the wire format
    (output / f"{image_path.stem}.mask.png").write_bytes(mask_bytes)
    with Image.open(image_path) as image, Image.open(io.BytesIO(mask_bytes)) as mask:
        target = output / f"{image_path.stem}.overlay.png"
        overlay(image, mask, result.get("Anomalies", [])).save(target)
    return target


def describe_anomalies(result: dict[str, Any]) -> str:
    """The anomaly labels found and how much of the image each covers (after the background entry).

    TotalPercentageArea is, despite its name, a fraction of the image (0.004 is 0.4 %).
    """
    anomalies = result.get("Anomalies", [])[1:]
    return ", ".join(f"{a['Name']} {100 * a['PixelAnomaly']['TotalPercentageArea']:.1f}%" for a in anomalies) \
        or "no anomalous area"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = example_parser(__doc__, "segmentation", "dataset in the cookies layout")
    parser.add_argument("--output", type=Path, default=Path("segmentation-output"),
                        help="folder for the masks and overlays (default ./segmentation-output)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    manifest = args.data / "dataset-files" / "manifests" / "template.manifest"
    test_images = sorted(p for p in (args.data / "test-images").glob("*") if p.suffix.lower() in CONTENT_TYPES)
    if not manifest.is_file() or not test_images:
        raise SystemExit(f"{args.data} is not in the cookies layout: need {manifest} and images in test-images/")
    args.output.mkdir(parents=True, exist_ok=True)

    project = Project(args)
    lines, uploads = prefixed_manifest(manifest, project.uri)
    project.ensure_bucket()
    project.upload(uploads)
    project.create()
    project.create_dataset("train", lines)
    version = project.train("segmentation-model")["ModelVersion"]
    project.start(version)
    try:
        print(f"Detecting anomalies in {len(test_images)} test images; masks and overlays go to {args.output}/")
        for done, path in enumerate(test_images, 1):
            result = project.detect(version, path)
            saved = save_masks(result, path, args.output)
            verdict = "anomaly" if result["IsAnomalous"] else "normal"
            print(f"  [{done:>3}/{len(test_images)}] {path.name:<28} {verdict:<8} {result['Confidence']:.2f}  "
                  f"{describe_anomalies(result)}{'' if saved else '  (no mask returned)'}", flush=True)
    finally:
        project.stop(version)
    print(f"\nIn the web console: {project.console_url}")


if __name__ == "__main__":
    run_main(run, parse_args(None))
