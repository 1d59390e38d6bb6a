#!/usr/bin/env python3
"""The whole Amazon Lookout for Vision inspection workflow, start to finish, with boto3.

Client: boto3 (AWS SDK for Python) >= 1.34 with ``pip install botocore-a-la-carte-lookoutvision``,
or boto3 <= 1.40.60, which still ships the service model. Nothing here is specific to the emulator:
the same calls ran against the AWS service.

1. upload the images to S3 and write SageMaker Ground Truth manifests (classification format);
2. create a project with a train and a test dataset, train model 1 and print its metrics;
3. host model 1 and run a trial detection (DetectAnomalies) over the ``extra`` images;
4. verify the predictions (labels from folder names, or asked interactively) and add the verified
   images to the train dataset with UpdateDatasetEntries;
5. train model 2 and compare both models' test metrics side by side.

Data (``--data``), either layout:

- ``train/{normal,anomaly}/``, ``test/{normal,anomaly}/`` and ``extra/``: the new images to verify,
  already sorted into ``extra/normal/`` and ``extra/anomaly/``, or directly in ``extra/``: labeled
  by their file names when a name holds exactly one of the words normal and anomaly (as in the
  cookies dataset's ``test-anomaly-3.jpg``), unlabeled otherwise;
- the Lookout for Vision getting-started *cookies* dataset (``dataset-files/training-images/`` and
  ``test-images/``), the default: training images numbered 1-20 form the train dataset, the rest
  (11 normal, 12 anomaly) the test dataset, which needs at least 10 of each label; the separate
  ``test-images/`` play the new images of the trial detection, labeled by their file names.

Usage, with ``lookout-emulator serve`` running::

    python client_examples/quickstart.py
    python client_examples/quickstart.py --data ~/my-parts --project parts --bucket my-bucket
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lookout_project import CONTENT_TYPES, Project, example_parser, run_main, wait_for

LABELS = ("normal", "anomaly")
COOKIES_TRAIN_UP_TO = 20  # cookies images numbered up to this go to the train dataset, the rest to test


# --- the images -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Image:
    path: Path
    key: str  # where it is uploaded, relative to the project's S3 prefix: train/normal/normal-1.jpg
    label: str | None  # "normal", "anomaly" or None (a new image nobody has labeled yet)


def images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in CONTENT_TYPES)


def folder_layout(root: Path) -> dict[str, list[Image]]:
    """``train/``, ``test/`` and ``extra/`` folders; a label is the name of the folder an image is in."""
    splits: dict[str, list[Image]] = {"train": [], "test": [], "extra": []}
    for split in splits:
        for label in LABELS:
            splits[split] += [Image(p, f"{split}/{label}/{p.name}", label) for p in images_in(root / split / label)]
    splits["extra"] += [Image(p, f"extra/{p.name}", label_in_name(p)) for p in images_in(root / "extra")]
    return splits


def label_in_name(path: Path) -> str | None:
    """The label a file name states (``test-anomaly-3.jpg``, ``normal_12.png``): the one of normal
    and anomaly among its words; None if it names neither or both."""
    words = set(re.split(r"[^a-z]+", path.stem.lower()))
    named = [label for label in LABELS if label in words]
    return named[0] if len(named) == 1 else None


def cookies_layout(root: Path) -> dict[str, list[Image]]:
    """The getting-started cookies dataset, mapped onto train/test/extra as the module docstring says."""
    splits: dict[str, list[Image]] = {"train": [], "test": [], "extra": []}
    for p in images_in(root / "dataset-files" / "training-images"):
        label, number = p.stem.split("-")  # normal-12.jpg
        split = "train" if int(number) <= COOKIES_TRAIN_UP_TO else "test"
        splits[split].append(Image(p, f"{split}/{label}/{p.name}", label))
    for p in images_in(root / "test-images"):
        splits["extra"].append(Image(p, f"extra/{p.name}", label_in_name(p)))  # test-anomaly-3.jpg
    return splits


def load_images(root: Path) -> dict[str, list[Image]]:
    if (root / "train").is_dir():
        splits = folder_layout(root)
    elif (root / "dataset-files" / "training-images").is_dir():
        splits = cookies_layout(root)
    else:
        raise SystemExit(f"{root} has neither train/, test/, extra/ folders nor the cookies dataset layout "
                         "(dataset-files/training-images/, test-images/); see --help")
    for split, images in splits.items():
        if not images:
            raise SystemExit(f"no .jpg/.png images for {split!r} under {root}")
    return splits


def manifest_line(uri: str, label: str) -> str:
    """A SageMaker Ground Truth image-classification line; the service reads the class from class-name."""
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    return json.dumps({
        "source-ref": uri,
        "anomaly-label": 1 if label == "anomaly" else 0,
        "anomaly-label-metadata": {"confidence": 1, "job-name": "labeling-job/quickstart", "class-name": label,
                                   "human-annotated": "yes", "creation-date": created,
                                   "type": "groundtruth/image-classification"},
    })


# --- trial detection and verification --------------------------------------------------------------

def trial_detection(project: Project, version: str, images: list[Image]) -> list[tuple[Image, dict[str, Any]]]:
    print(f"Trial detection: {len(images)} new images through model {version}")
    results = []
    for done, image in enumerate(images, 1):
        result = project.detect(version, image.path)
        verdict = "anomaly" if result["IsAnomalous"] else "normal"
        print(f"  [{done:>3}/{len(images)}] {image.key:<44} {verdict:<8} confidence {result['Confidence']:.2f}",
              flush=True)
        results.append((image, result))
    return results


def ask_label(image: Image, predicted: str) -> str | None:
    """The correct label of one image from the person at the terminal; None to leave it out."""
    while True:
        answer = input(f"  {image.path}: the model says {predicted}. "
                       "[n]ormal, [a]nomaly, Enter = agree, [s]kip? ").strip().lower()
        if answer == "":
            return predicted
        if answer in ("n", "normal", "a", "anomaly"):
            return "normal" if answer.startswith("n") else "anomaly"
        if answer in ("s", "skip"):
            return None


def verify(results: list[tuple[Image, dict[str, Any]]], interactive: bool) -> list[tuple[Image, str]]:
    """Pair each image with its verified label: a folder's label wins, else the user's answer.

    Without either, an image is left out: adding the model's own guesses would teach it nothing.
    """
    verified, correct, skipped = [], 0, 0
    for image, result in results:
        predicted = "anomaly" if result["IsAnomalous"] else "normal"
        label = image.label or (ask_label(image, predicted) if interactive else None)
        if label is None:
            skipped += 1
            continue
        verified.append((image, label))
        correct += label == predicted
    print(f"Verified {len(verified)} images: the model was right on {correct}, wrong on {len(verified) - correct}"
          + (f"; {skipped} left out (no label in a folder or file name; run interactively to label them)"
             if skipped else ""))
    return verified


def add_to_training(project: Project, verified: list[tuple[Image, str]]) -> None:
    """UpdateDatasetEntries with the verified images (already in the dataset's bucket, as LFV requires)."""
    print(f"Adding {len(verified)} verified images to the train dataset")
    changes = "\n".join(manifest_line(project.uri(image.key), label) for image, label in verified)
    project.lookout.update_dataset_entries(ProjectName=project.name, DatasetType="train", Changes=changes.encode())
    wait_for("train dataset", lambda: project.dataset_status("train"), "UPDATE_COMPLETE", project.interval)


def print_comparison(first: dict[str, Any], second: dict[str, Any], train_sizes: tuple[int, int]) -> None:
    left, right = f"model {first['ModelVersion']}", f"model {second['ModelVersion']}"
    print(f"\n{'':<18}{left:>10}{right:>10}{'change':>10}")
    for title, key in (("F1 score", "F1Score"), ("Precision", "Precision"), ("Recall", "Recall")):
        a, b = first.get("Performance", {}).get(key, 0.0), second.get("Performance", {}).get(key, 0.0)
        print(f"{title:<18}{a:>10.3f}{b:>10.3f}{b - a:>+10.3f}")
    a, b = train_sizes
    print(f"{'Training images':<18}{a:>10}{b:>10}{b - a:>+10}")


# --- main -----------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = example_parser(__doc__, "quickstart", "image folder in the train/test/extra or the cookies layout")
    parser.add_argument("--non-interactive", action="store_true",
                        help="never ask for labels: new images labeled by neither folder nor file name are left out")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    started = time.monotonic()
    splits = load_images(args.data)
    project = Project(args)
    project.ensure_bucket()
    project.upload([(image.path, image.key) for images in splits.values() for image in images])
    project.create()
    for dataset_type in ("train", "test"):
        project.create_dataset(dataset_type, [manifest_line(project.uri(i.key), i.label) for i in splits[dataset_type]])

    first = project.train("initial-model")
    version = first["ModelVersion"]
    project.start(version)
    try:
        results = trial_detection(project, version, splits["extra"])
    finally:
        project.stop(version)

    verified = verify(results, interactive=not args.non_interactive and sys.stdin.isatty())
    if not verified:
        raise SystemExit("no verified images to add: label the extra images (extra/normal/, extra/anomaly/ "
                         "or interactively) and run again")
    before = project.dataset("train")["ImageStats"]["Labeled"]
    add_to_training(project, verified)
    second = project.train(f"retrained-with-{len(verified)}-verified-images")
    print_comparison(first, second, (before, project.dataset("train")["ImageStats"]["Labeled"]))
    print(f"\nDone in {time.monotonic() - started:.0f} s: project {project.name}, "
          f"images and evaluation results in {project.uri('')}")
    print(f"See it in the web console: {project.console_url}")


if __name__ == "__main__":
    run_main(run, parse_args(None))
