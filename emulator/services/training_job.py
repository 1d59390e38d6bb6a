"""CreateModel's background work: copy the planned images, train, evaluate, record the outcome.

The plan (`emulator.services.training_plan`) was checked inside the CreateModel request. What can
only be learnt by reading the images (a missing object, a corrupt file, a wrong size, a mask whose
colours do not match its manifest line) is found here and reported as TRAINING_FAILED with a
StatusMessage that names the image. Like the real service, the job copies every image it uses into
the model's own directory under ``settings.models_dir``, so a trained or hosted model never reads S3
again.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emulator.api.errors import ValidationException
from emulator.api.statuses import ModelStatus
from emulator.backend import Backend, per_backend
from emulator.formats import jsontext
from emulator.formats.image_files import ImageError, open_image, rgb_pixels
from emulator.s3.objects import ObjectNotFound
from emulator.s3.uri import parse_s3_uri
from emulator.services.evaluation_output import write_evaluation
from emulator.services.lookups import engine_dir, model_dir
from emulator.services.training_plan import Sample, TrainingError, TrainingPlan

if TYPE_CHECKING:
    import engine

log = logging.getLogger(__name__)

FIT_SEED = 0
# The engine's safety cap on training time; limits.md's maximum training time, so that a slow or busy
# machine makes training slower, never different or failed.
MAX_TRAINING_SECONDS = 24 * 3600.0
_BACKGROUND = {"#FFFFFF", "#000000"}
_PROGRESS_INTERVAL = 1.0


@dataclass
class Progress:
    """Where a running training job is, for the console's live view. Kept in memory only: a
    restart fails the job (`fail_interrupted_training`), so there is nothing to resume."""

    started: float  # time.time() when the job began
    stage: str
    fraction: float = 0.0


@per_backend
def _running(backend: Backend) -> dict[tuple[str, int], Progress]:
    return {}


def training_progress(backend: Backend, project: str, version: int) -> Progress | None:
    """The stage of model `version`'s training job; None when no job of this server is training it."""
    return _running(backend).get((project, int(version)))


class _Interrupted(Exception):
    """The emulator is shutting down: training stops and leaves the model to start-up recovery."""


def update_model_row(backend: Backend, project: str, version: int, **columns: Any) -> None:
    """Write job outcomes (status, metrics, hosting state) to one model row."""
    names = ", ".join(f"{name}=?" for name in columns)
    with backend.store.transaction() as db:
        db.execute(f"UPDATE models SET {names} WHERE project=? AND version=?",
                   (*columns.values(), project, version))



# ------------------------------------------------------------------------------------------- the job
def submit(backend: Backend, plan: TrainingPlan) -> None:
    backend.jobs.submit(f"train {plan.project} v{plan.version}", run_training, backend, plan)


def run_training(backend: Backend, plan: TrainingPlan) -> None:
    """Train, evaluate and record the outcome; never raises (the outcome is the model's status).
    While it runs, `training_progress` tells its stage."""
    running = _running(backend)
    key = (plan.project, plan.version)
    running[key] = Progress(time.time(), "copying the training and test images")
    try:
        _train(backend, plan, running[key])
    finally:
        running.pop(key, None)


def _train(backend: Backend, plan: TrainingPlan, progress: Progress) -> None:
    import engine

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
                           progress=_progress(backend, plan, progress))
        progress.stage, progress.fraction = "writing the evaluation results", 1.0
        model.save(engine_dir(backend, plan.project, plan.version))
        metrics = model.test_metrics if model.test_metrics is not None else model.evaluate(test)
        finished = backend.now()
        # Every model's anomaly maps (and a segmentation model's masks) go with the evaluation output.
        manifest, result = write_evaluation(backend, plan, metrics, finished, _predictions(model, test))
        performance = {"F1Score": metrics.f1, "Recall": metrics.recall, "Precision": metrics.precision}
        update_model_row(
            backend, plan.project, plan.version, status=ModelStatus.TRAINED,
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


def _predictions(model: engine.Model, items: Sequence[engine.Item],
                 batch: int = 8) -> Iterator[tuple[str, engine.Prediction]]:
    """(name, prediction) of each item, predicted a batch at a time as they are consumed."""
    for start in range(0, len(items), batch):
        chunk = items[start:start + batch]
        yield from zip((item.name for item in chunk), model.predict_batch([item.image for item in chunk]),
                       strict=True)


def _fail(backend: Backend, plan: TrainingPlan, message: str) -> None:
    update_model_row(backend, plan.project, plan.version, status=ModelStatus.TRAINING_FAILED,
                     status_message=jsontext.storable(f"Training failed: {message}"))


def _progress(backend: Backend, plan: TrainingPlan, progress: Progress) -> Callable[[float, str], None]:
    """An engine progress callback: keeps `progress` current, shows the step in StatusMessage (at
    most once a second) and ends training early when the emulator shuts down."""
    last = [0.0]

    def report(fraction: float, step: str) -> None:
        if backend.jobs.stopping.is_set():
            raise _Interrupted
        progress.stage, progress.fraction = step, fraction
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


def _materialise(backend: Backend, samples: Sequence[Sample], target: Path, plan: TrainingPlan,
                 reference: engine.Item | None) -> list[engine.Item]:
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


def _copy(backend: Backend, uri: str, stem: Path, formats: tuple[str, ...]) -> np.ndarray:
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
def fail_interrupted_training(backend: Backend) -> None:
    """A model left TRAINING by a crash or restart is marked failed: its job died with the process."""
    with backend.store.transaction() as db:
        db.execute("UPDATE models SET status=?, status_message=? WHERE status=?",
                   (ModelStatus.TRAINING_FAILED, "Training failed: the emulator stopped while the model was training. "
                    "Call CreateModel again to train a new version.", ModelStatus.TRAINING))
