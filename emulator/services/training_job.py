"""CreateModel's work: choose the training and test images, then train and evaluate in the background.

`plan_training` runs inside the CreateModel request and applies the documented prerequisites
(limits.md, model-create-dataset.md) so that a project that cannot be trained is refused at once,
as the console's disabled "Train model" button and the API did. What can only be learnt by reading
the images (a missing object, a corrupt file, a wrong size, a mask whose colours do not match its
manifest line) is found by the background job and reported as TRAINING_FAILED with a StatusMessage
that names the image.

The plan is fixed when CreateModel answers: later dataset changes do not affect a model in training.
Like the real service, the job copies every image it uses into the model's own directory under
``settings.models_dir``, so a trained or hosted model never reads S3 again.
"""
from __future__ import annotations

import json
import logging
import random
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emulator import jsontext
from emulator.api.errors import ConflictException, ValidationException
from emulator.formats.image_files import ImageError, open_image, rgb_pixels
from emulator.s3.frontend import parse_s3_uri
from emulator.s3.stores import ObjectNotFound

if TYPE_CHECKING:
    import engine
    from emulator.backend import Backend
    from emulator.services.datasets import Entry

log = logging.getLogger(__name__)

TRAINING, TRAINED, TRAINING_FAILED = "TRAINING", "TRAINED", "TRAINING_FAILED"

# limits.md / model-create-dataset.md. A single-dataset project is split automatically, so it needs
# enough of each class for both halves; per-label minimums count images with exactly one anomaly label.
SINGLE_MIN_NORMAL, SINGLE_MIN_ANOMALY, SINGLE_MIN_PER_LABEL = 20, 10, 20
SEPARATE_MIN_TRAIN_NORMAL, SEPARATE_MIN_TEST_NORMAL, SEPARATE_MIN_TEST_ANOMALY = 10, 10, 10
SEPARATE_MIN_PER_LABEL = 10

# The automatic split of a single dataset: this share of every stratum goes to the test set, drawn
# with a fixed seed so the same dataset always gives the same split (and the same model).
TEST_SHARE = 0.2
SPLIT_SEED = 20201120
FIT_SEED = 0
# The engine's safety cap on training time; limits.md's maximum training time, so that a slow or busy
# machine makes training slower, never different or failed.
MAX_TRAINING_SECONDS = 24 * 3600.0

_READY_DATASET = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_FAILED_ROLLBACK_COMPLETE")
_BUSY_DATASET = ("CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS", "UPDATE_FAILED_ROLLBACK_IN_PROGRESS",
                 "DELETE_IN_PROGRESS")
_BACKGROUND = {"#FFFFFF", "#000000"}
_PROGRESS_INTERVAL = 1.0


@dataclass(frozen=True)
class Sample:
    """One labelled image chosen for training or testing: an Entry reduced to what training needs."""

    source_ref: str
    label: str  # "normal" | "anomaly"
    mask_ref: str | None
    label_colors: dict[str, str]
    line: dict[str, Any]


@dataclass
class TrainingPlan:
    """Everything the background job needs; built and checked inside the CreateModel request."""

    project: str
    version: int
    model_arn: str
    train: list[Sample]
    test: list[Sample]
    auto_split: bool
    label_colors: dict[str, str] = field(default_factory=dict)  # empty: a classification model
    output_bucket: str = ""
    output_prefix: str = ""

    @property
    def is_segmentation(self) -> bool:
        return bool(self.label_colors)


class TrainingError(Exception):
    """A problem with the training data that the user has to fix; the message becomes StatusMessage."""


class _Interrupted(Exception):
    """The emulator is shutting down: training stops and leaves the model to start-up recovery."""


# ---------------------------------------------------------------------------------------------- layout
def model_dir(backend: "Backend", project: str, version: int) -> Path:
    """The model's own storage: copied images, the engine artifact, the training record."""
    return backend.settings.models_dir / project / str(version)


def engine_dir(backend: "Backend", project: str, version: int) -> Path:
    return model_dir(backend, project, version) / "engine"


def update_model_row(backend: "Backend", project: str, version: int, **columns: Any) -> None:
    """Write job outcomes (status, metrics, hosting state) to one model row."""
    names = ", ".join(f"{name}=?" for name in columns)
    with backend.store.transaction() as db:
        db.execute(f"UPDATE models SET {names} WHERE project=? AND version=?",
                   (*columns.values(), project, version))


# ------------------------------------------------------------------------------------------- planning
def plan_training(backend: "Backend", project: str) -> tuple[list[Sample], list[Sample], bool, dict[str, str]]:
    """Check the project's datasets against the documented prerequisites and choose the images.

    Returns (train, test, auto_split, label_colors); raises the error CreateModel answers otherwise.
    """
    from emulator.services.datasets import list_entries

    _require_ready(backend, project, "train", required=True)
    has_test = _require_ready(backend, project, "test", required=False)
    train = _labelled(list_entries(backend, project, "train"))
    label_colors = _label_colors(train, "training")
    if has_test:
        test = _labelled(list_entries(backend, project, "test"))
        _label_colors(test, "test")
        _check_counts(train, "training dataset", SEPARATE_MIN_TRAIN_NORMAL, 0,
                      SEPARATE_MIN_PER_LABEL, label_colors, "a project with separate training and test datasets")
        _check_counts(test, "test dataset", SEPARATE_MIN_TEST_NORMAL, SEPARATE_MIN_TEST_ANOMALY,
                      SEPARATE_MIN_PER_LABEL, label_colors, "a project with separate training and test datasets")
        return train, test, False, label_colors
    _check_counts(train, "dataset", SINGLE_MIN_NORMAL, SINGLE_MIN_ANOMALY, SINGLE_MIN_PER_LABEL,
                  label_colors, "a single-dataset project (it is split into training and test images)")
    train, test = split_dataset(train)
    return train, test, True, label_colors


def _require_ready(backend: "Backend", project: str, dataset_type: str, required: bool) -> bool:
    """Whether the dataset exists and can be trained on; an error if it is busy or unusable."""
    row = backend.store.query_one("SELECT status FROM datasets WHERE project=? AND dataset_type=?",
                                  (project, dataset_type))
    if row is None:
        if required:
            raise ValidationException(
                f"Project {project} has no train dataset. Create one with CreateDataset (DatasetType train) "
                "before calling CreateModel.")
        return False
    status = row["status"]
    if status in _BUSY_DATASET:
        raise ConflictException(
            f"The {dataset_type} dataset of project {project} is {status}; wait until it finishes before "
            "calling CreateModel.", resource_id=dataset_type, resource_type="DATASET")
    if status not in _READY_DATASET:
        raise ValidationException(
            f"The {dataset_type} dataset of project {project} is {status} and can't be used for training; "
            "delete it and create it again.")
    return True


def _labelled(entries: Sequence["Entry"]) -> list[Sample]:
    """Unlabelled images are ignored by training (limits.md, "Lack of labels")."""
    return [Sample(e.source_ref, e.label, e.mask_ref, dict(e.label_colors), e.line)
            for e in entries if e.label in ("normal", "anomaly")]


def _label_colors(samples: Sequence[Sample], which: str) -> dict[str, str]:
    """The anomaly labels and their colours over all masked images; one colour per label."""
    colours: dict[str, str] = {}
    for sample in samples:
        if sample.mask_ref is None:
            continue
        for name, colour in sample.label_colors.items():
            known = colours.setdefault(name, colour.upper())
            if known != colour.upper():
                raise ValidationException(
                    f"The anomaly label {name} has the colour {known} in one {which} image and {colour} in "
                    f"{sample.source_ref}; each anomaly label must have one colour in all mask images.")
    return colours


def _check_counts(samples: Sequence[Sample], what: str, min_normal: int, min_anomaly: int, min_per_label: int,
                  label_colors: dict[str, str], configuration: str) -> None:
    counts = Counter(sample.label for sample in samples)
    needs = []
    if counts["normal"] < min_normal:
        needs.append(f"at least {min_normal} images labeled normal (it has {counts['normal']})")
    if counts["anomaly"] < min_anomaly:
        needs.append(f"at least {min_anomaly} images labeled anomaly (it has {counts['anomaly']})")
    single_label = Counter(next(iter(s.label_colors)) for s in samples
                           if s.label == "anomaly" and s.mask_ref is not None and len(s.label_colors) == 1)
    for name in sorted(label_colors):
        if single_label[name] < min_per_label:
            needs.append(f"at least {min_per_label} anomaly images whose mask has only the label {name} "
                         f"(it has {single_label[name]})")
    if needs:
        raise ValidationException(
            f"Not enough labeled images to train: the {what} of {configuration} needs " + "; ".join(needs)
            + ". Add labeled images with UpdateDatasetEntries and try again.")


def split_dataset(samples: Sequence[Sample]) -> tuple[list[Sample], list[Sample]]:
    """Deterministic stratified split of a single dataset into (train, test).

    Strata are the class and, for masked anomalies, the set of anomaly labels, so every label of a
    segmentation model is tested. Each stratum is ordered by source-ref and shuffled with a fixed
    seed; a rounded TEST_SHARE of it (at least one image when the stratum has two) goes to test.
    """
    strata: dict[tuple[str, tuple[str, ...]], list[Sample]] = defaultdict(list)
    for sample in samples:
        labels = tuple(sorted(sample.label_colors)) if sample.mask_ref else ()
        strata[(sample.label, labels)].append(sample)
    rng = random.Random(SPLIT_SEED)
    train: list[Sample] = []
    test: list[Sample] = []
    for key in sorted(strata):
        members = sorted(strata[key], key=lambda s: s.source_ref)
        rng.shuffle(members)
        n_test = max(1, round(len(members) * TEST_SHARE)) if len(members) >= 2 else 0
        test.extend(members[:n_test])
        train.extend(members[n_test:])
    return train, test


# ------------------------------------------------------------------------------------------- the job
def submit(backend: "Backend", plan: TrainingPlan) -> None:
    backend.jobs.submit(f"train {plan.project} v{plan.version}", run_training, backend, plan)


def run_training(backend: "Backend", plan: TrainingPlan) -> None:
    """Train, evaluate and record the outcome; never raises (the outcome is the model's status)."""
    import engine

    from emulator.services.evaluation_output import write_evaluation

    started = time.monotonic()
    try:
        directory = model_dir(backend, plan.project, plan.version)
        shutil.rmtree(directory, ignore_errors=True)  # leftovers of a deleted project of the same name
        train = _materialise(backend, plan.train, directory / "data" / "train", plan, None)
        test = _materialise(backend, plan.test, directory / "data" / "test", plan, train[0])
        _write_record(directory, plan)
        options = engine.FitOptions(seed=FIT_SEED, max_train_seconds=MAX_TRAINING_SECONDS,
                                    backbone=backend.settings.backbone)
        model = engine.fit(train, test, options, label_colors=plan.label_colors or None,
                           progress=_progress(backend, plan))
        model.save(engine_dir(backend, plan.project, plan.version))
        metrics = model.test_metrics if model.test_metrics is not None else model.evaluate(test)
        masks = {}
        if model.is_segmentation:  # the predicted masks go with the evaluation output
            predictions = model.predict_batch([item.image for item in test])
            masks = {item.name: prediction.mask for item, prediction in zip(test, predictions)}
        finished = backend.now()
        manifest, result = write_evaluation(backend, plan, metrics, finished, masks)
        performance = {"F1Score": metrics.f1, "Recall": metrics.recall, "Precision": metrics.precision}
        update_model_row(
            backend, plan.project, plan.version, status=TRAINED,
            status_message=f"Training completed in {time.monotonic() - started:.1f} s "
                           f"({len(train)} training and {len(test)} test images).",
            performance=json.dumps(performance), evaluation_manifest=json.dumps(manifest),
            evaluation_result=json.dumps(result), evaluation_end=finished)
    except _Interrupted:
        return
    except (TrainingError, engine.EngineError) as exc:
        _fail(backend, plan, str(exc))
    except Exception:  # a bug of ours (or recording the outcome failed): traceback to the log, not the status
        log.exception("training %s v%s failed", plan.project, plan.version)
        _fail(backend, plan, "an internal error stopped training; the server log has the details.")


def _fail(backend: "Backend", plan: TrainingPlan, message: str) -> None:
    update_model_row(backend, plan.project, plan.version, status=TRAINING_FAILED,
                     status_message=jsontext.storable(f"Training failed: {message}"))


def _progress(backend: "Backend", plan: TrainingPlan) -> Callable[[float, str], None]:
    """An engine progress callback: shows the current step in StatusMessage (at most once a second)
    and ends training early when the emulator shuts down."""
    last = [0.0]

    def report(fraction: float, step: str) -> None:
        if backend.jobs.stopping.is_set():
            raise _Interrupted
        now = time.monotonic()
        if now - last[0] >= _PROGRESS_INTERVAL:
            last[0] = now
            update_model_row(backend, plan.project, plan.version,
                             status_message=f"Training in progress: {step} ({fraction:.0%}).")

    return report


def _write_record(directory: Path, plan: TrainingPlan) -> None:
    """The model's own manifest of what it was trained and tested on (for operators and packaging)."""
    record = {
        "ModelArn": plan.model_arn,
        "AutoSplit": plan.auto_split,
        "LabelColors": plan.label_colors,
        "Train": [s.line for s in plan.train],
        "Test": [s.line for s in plan.test],
    }
    (directory / "training-data.json").write_text(json.dumps(record))


def _materialise(backend: "Backend", samples: Sequence[Sample], target: Path, plan: TrainingPlan,
                 reference: "engine.Item | None") -> list["engine.Item"]:
    """Read, check and copy the images (and masks) of one split; engine Items in the same order.

    Every image must have the dimensions of `reference` (the first training image) or, without one,
    of the first image of this split.
    """
    import engine

    target.mkdir(parents=True, exist_ok=True)
    items: list[engine.Item] = []
    for index, sample in enumerate(samples):
        image = _copy(backend, sample.source_ref, target / f"{index:05d}-image", ("PNG", "JPEG"))
        first = reference or (items[0] if items else None)
        if first is not None and image.shape != first.image.shape:
            raise TrainingError(
                f"{sample.source_ref} is {image.shape[1]}x{image.shape[0]} pixels but {first.name} is "
                f"{first.image.shape[1]}x{first.image.shape[0]}; all images in a project must have the same "
                "dimensions.")
        mask = None
        if plan.is_segmentation and sample.mask_ref is not None:
            mask = _copy(backend, sample.mask_ref, target / f"{index:05d}-mask", ("PNG",))
            if mask.shape != image.shape:
                raise TrainingError(
                    f"The mask {sample.mask_ref} is {mask.shape[1]}x{mask.shape[0]} pixels but its image "
                    f"{sample.source_ref} is {image.shape[1]}x{image.shape[0]}; a mask must have its image's size.")
            _check_mask_colours(mask, sample)
        items.append(engine.Item(image=image, label=sample.label, mask=mask, name=sample.source_ref))
    return items


def _copy(backend: "Backend", uri: str, stem: Path, formats: tuple[str, ...]) -> np.ndarray:
    """Fetch an image from S3, keep a copy in the model's storage and return its RGB pixels (checked)."""
    try:
        bucket, key = parse_s3_uri(uri)
        data = backend.objects.get(bucket, key)
    except ValidationException as exc:
        raise TrainingError(exc.message) from None
    except ObjectNotFound:
        raise TrainingError(f"{uri} does not exist or can't be read; restore it or remove it from the "
                            "dataset, then train again.") from None
    try:
        image = open_image(data, uri, formats)
        pixels = rgb_pixels(image, data, uri)
    except ImageError as exc:
        what = "Mask images must be PNG files. " if formats == ("PNG",) else ""
        raise TrainingError(f"{what}{exc}") from None
    stem.with_suffix(".png" if image.format == "PNG" else ".jpg").write_bytes(data)
    return pixels


def _check_mask_colours(mask: np.ndarray, sample: Sample) -> None:
    """Training fails when a mask holds colours its manifest line does not declare (troubleshooting guide)."""
    packed = (mask[..., 0].astype(np.uint32) << 16) | (mask[..., 1].astype(np.uint32) << 8) | mask[..., 2]
    found = {f"#{value:06X}" for value in np.unique(packed)}
    declared = {colour.upper() for colour in sample.label_colors.values()}
    unknown = sorted(found - declared - _BACKGROUND)
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        names = ", ".join(f"{n} {c}" for n, c in sample.label_colors.items()) or "none"
        raise TrainingError(
            f"The mask {sample.mask_ref} contains the colours {shown}, which are not in the internal-color-map "
            f"of its manifest line (anomaly labels: {names}). Mask colours must match the hex-color of the "
            "anomaly labels exactly; fix the mask or the manifest line.")


# ------------------------------------------------------------------------------------------ recovery
def fail_interrupted_training(backend: "Backend") -> None:
    """A model left TRAINING by a crash or restart is marked failed: its job died with the process."""
    with backend.store.transaction() as db:
        db.execute("UPDATE models SET status=?, status_message=? WHERE status=?",
                   (TRAINING_FAILED, "Training failed: the emulator stopped while the model was training. "
                    "Call CreateModel again to train a new version.", TRAINING))
