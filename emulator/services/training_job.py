"""CreateModel's background work: copy the planned images, train, evaluate, record the outcome.

The plan (`emulator.services.training_plan`) was checked inside the CreateModel request. What can
only be learnt by reading the images (a missing object, a corrupt file, a wrong size, a mask whose
colours do not match its manifest line) is found here and reported as TRAINING_FAILED with a
StatusMessage that names the image. Like the real service, the job copies every image it uses into
the model's own directory under ``settings.models_dir`` (scratch for this run), so that later
changes to the dataset's objects never change the model. The finished engine artifact is published
to the object store (`emulator.services.artifacts`), from which any node loads it.

A model created while its project's datasets were still being imported or updated waits: its job
chooses the images once no dataset job of the project runs any more, and looks again every
WAIT_POLL_SECONDS until then, from a new job each time, so that it never holds a job worker the
dataset jobs need. If a dataset ends unusable (its import failed) or the project does not meet the
minimums, the model ends TRAINING_FAILED with the reason in its StatusMessage, where a ready project
would have had the error from CreateModel.

A training that a stop or a crash cut off starts again from its saved plan when the server starts
(`resume_training`); training is deterministic, so the resumed model is the one it would have been.
"""
from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emulator import training_process
from emulator.api.errors import ConflictException, ServiceError, ValidationException
from emulator.api.statuses import DatasetStatus, ModelStatus
from emulator.backend import Backend, per_backend
from emulator.disk import DISK_FULL, is_disk_full
from emulator.formats import jsontext
from emulator.formats.image_files import ImageError, open_image, rgb_pixels
from emulator.jobs import TRAINING, Outcome, handler
from emulator.s3.objects import ObjectNotFound
from emulator.s3.uri import parse_s3_uri
from emulator.services import artifacts
from emulator.services.evaluation_output import write_evaluation
from emulator.services.lookups import engine_dir, model_dir
from emulator.services.training_plan import (
    Sample,
    TrainingError,
    TrainingPlan,
    busy_dataset,
    load_plan,
    plan_training,
    save_plan,
)
from emulator.store.records import TrainingProgress

if TYPE_CHECKING:
    import engine

log = logging.getLogger(__name__)

TRAINING_MESSAGE = "Training in progress."
# How often a model waiting for its datasets looks again whether their jobs have ended.
WAIT_POLL_SECONDS = 0.5
# The engine's safety cap on training time; limits.md's maximum training time, so that a slow or busy
# machine makes training slower, never different or failed.
MAX_TRAINING_SECONDS = 24 * 3600.0
_BACKGROUND = {"#FFFFFF", "#000000"}
_PROGRESS_INTERVAL = 1.0
# Recording a failure on a full disk: first retry after this many seconds, doubling up to the maximum.
_RETRY_SECONDS, _RETRY_MAX_SECONDS = 0.5, 30.0


@per_backend
def _running(backend: Backend) -> set[tuple[str, int]]:
    """The models this server is training now."""
    return set()


def trainings_running(backend: Backend) -> int:
    """How many training jobs of this server are running now (/metrics)."""
    return len(_running(backend))


def _training_message(backend: Backend, project: str, version: int, message: str) -> None:
    """Show `message` in the StatusMessage of a model that is still training (a second run of a
    finished job, or a model deleted meanwhile, changes nothing)."""
    backend.store.models.set_message(project, version, ModelStatus.TRAINING, message)


def _end_training(backend: Backend, project: str, version: int, status: str, message: str,
                  **columns: Any) -> None:
    """Record the outcome of a training: TRAINING -> `status` (TRAINED or TRAINING_FAILED)."""
    backend.store.models.transition(project, version, (ModelStatus.TRAINING,), status, message, **columns)



# ------------------------------------------------------------------------------------------- the job
def submit(backend: Backend, plan: TrainingPlan, resumed: bool = False) -> None:
    """Queue the training of `plan`, which is saved with the model (the job names only the model)."""
    backend.jobs.submit(TRAINING, f"{plan.project}/{plan.version}", run_saved_plan, backend, plan.project,
                        plan.version, resumed=resumed)


@handler
def run_saved_plan(backend: Backend, project: str, version: int) -> Outcome:
    """The training job: train from the plan saved with the model, so that a job carries only names and
    any node of a fleet can run it."""
    plan = load_plan(backend, project, version)
    if plan is None:
        _fail_without_plan(backend, project, version)
        return Outcome.FAILED
    return run_training(backend, plan)


def _fail_without_plan(backend: Backend, project: str, version: int) -> None:
    _end_training(backend, project, version, ModelStatus.TRAINING_FAILED,
                  "Training failed: the emulator stopped before the model's training plan was saved. Call "
                  "CreateModel again to train a new version.")


def _ready_plan(backend: Backend, plan: TrainingPlan) -> TrainingPlan | Outcome:
    """The plan of a model that waited for its datasets, now that they are ready (saved with the
    model); else how this run of the job ends: DEFERRED when it must wait longer, FAILED when the
    datasets can't be trained on (the model's status says why)."""
    if busy_dataset(backend, plan.project) is not None:
        _look_again_later(backend, plan)
        return Outcome.DEFERRED
    try:
        train, test, auto_split, label_colors = plan_training(backend, plan.project)
    except ConflictException:  # a dataset job began just now
        _look_again_later(backend, plan)
        return Outcome.DEFERRED
    except ServiceError as refused:
        return _fail(backend, plan, _why_unusable(backend, plan.project, refused))
    plan = replace(plan, train=train, test=test, auto_split=auto_split, label_colors=label_colors, waiting=False)
    save_plan(backend, plan)
    _training_message(backend, plan.project, plan.version, TRAINING_MESSAGE)
    return plan


def _look_again_later(backend: Backend, plan: TrainingPlan) -> None:
    """Submit the waiting model's job again in a while, behind the dataset jobs queued meanwhile."""
    backend.jobs.submit_later(WAIT_POLL_SECONDS, TRAINING, f"{plan.project}/{plan.version}", run_saved_plan, backend,
                              plan.project, plan.version)


def _why_unusable(backend: Backend, project: str, refused: ServiceError) -> str:
    """The StatusMessage reason of a waiting model whose datasets can't be trained on: the failed
    import's own message where there is one, else the error CreateModel would have answered."""
    failed = backend.store.datasets.first_in(project, (DatasetStatus.CREATE_FAILED,))
    if failed is None:
        return refused.message
    return (f"the {failed.dataset_type} dataset could not be imported ({failed.status_message}). Delete the "
            "dataset, create it again from a corrected manifest, then call CreateModel again.")


def run_training(backend: Backend, plan: TrainingPlan) -> Outcome:
    """Train, evaluate and record the outcome; never raises (the outcome is the model's status).
    While it runs, the store holds its progress (`Models.progress`) for every node to show."""
    running = _running(backend)
    key = (plan.project, plan.version)
    running.add(key)
    try:
        return _train(backend, plan)
    finally:
        running.discard(key)


def _train(backend: Backend, plan: TrainingPlan) -> Outcome:
    import engine

    row = backend.store.models.get(plan.project, plan.version)
    if row is None or row.status != ModelStatus.TRAINING:  # gone, or a second run of a finished job
        return Outcome.SKIPPED
    started = time.monotonic()
    try:
        if plan.waiting:
            ready = _ready_plan(backend, plan)
            if isinstance(ready, Outcome):
                return ready
            plan = ready
        report = _progress(backend, plan)
        report(0.0, "copying the training and test images")
        directory = model_dir(backend, plan.project, plan.version)
        for part in ("data", "engine"):  # what an interrupted run of this plan left
            shutil.rmtree(directory / part, ignore_errors=True)
        train = _materialise(backend, plan.train, directory / "data" / "train", plan, None)
        test = _materialise(backend, plan.test, directory / "data" / "test", plan, train[0])
        options = engine.FitOptions(seed=backend.settings.engine_seed, max_train_seconds=MAX_TRAINING_SECONDS,
                                    backbone=backend.settings.backbone, device=backend.settings.device,
                                    finetune_epochs=backend.settings.finetune_epochs,
                                    finetune_repeats=backend.settings.finetune_repeats)
        with training_process.start(train, test, options, plan.label_colors or None,
                                    engine_dir(backend, plan.project, plan.version), backend.jobs.stopping) as child:
            del train[:], test[:]  # the child has its copy; the images need not stay in the server's memory too
            child.wait_saved(report)
            artifacts.publish(backend, plan.project, plan.version)  # before TRAINED: every node can then load it
            metrics = child.metrics()
            finished = backend.now()
            # Every model's anomaly maps (and a segmentation model's masks) go with the evaluation output.
            manifest, result = write_evaluation(backend, plan, metrics, finished, child.predictions())
        performance = {"F1Score": metrics.f1, "Recall": metrics.recall, "Precision": metrics.precision}
        _end_training(
            backend, plan.project, plan.version, ModelStatus.TRAINED,
            f"Training completed in {time.monotonic() - started:.1f} s "
            f"({len(plan.train)} training and {len(plan.test)} test images).",
            performance=performance, evaluation_manifest=manifest, evaluation_result=result, evaluation_end=finished)
    except training_process.Interrupted:
        return Outcome.INTERRUPTED
    except training_process.ProcessDied as exc:
        log.error("training %s v%s failed: %s", plan.project, plan.version, exc)
        return _fail(backend, plan, str(exc))
    except (TrainingError, engine.EngineError) as exc:
        return _fail(backend, plan, str(exc))
    except ObjectNotFound as exc:  # publishing the artifact (write_evaluation reports as TrainingError)
        return _fail(backend, plan, f"the model could not be written to the object store ({exc}).")
    except Exception as exc:
        if not is_disk_full(exc):  # a bug of ours (or recording the outcome failed): traceback to the log
            log.exception("training %s v%s failed", plan.project, plan.version)
            return _fail(backend, plan, "an internal error stopped training; the server log has the details.")
        log.error("training %s v%s failed: the data directory's disk is full (%s)", plan.project, plan.version, exc)
        for part in ("data", "engine"):  # of no use now; freeing them lets the failure be recorded
            shutil.rmtree(model_dir(backend, plan.project, plan.version) / part, ignore_errors=True)
        return _fail(backend, plan, f"{DISK_FULL}. Free space there, then call CreateModel again.")
    return Outcome.SUCCEEDED


def _fail(backend: Backend, plan: TrainingPlan, message: str) -> Outcome:
    """Record TRAINING_FAILED with `message` (see `record_failure`); how the training job ends."""
    return record_failure(backend, plan.project, plan.version, jsontext.storable(f"Training failed: {message}"),
                          _RETRY_SECONDS)


@handler
def record_failure(backend: Backend, project: str, version: int, message: str, retry_in: float) -> Outcome:
    """Record TRAINING_FAILED. A full disk can refuse even that write: a job then tries again in `retry_in`
    seconds, at doubling intervals, until it succeeds, so that no model stays TRAINING with no job behind it.
    It is a queued job (a job continued: the training's one outcome is counted when the failure is
    recorded), so on PostgreSQL it survives this node; when the emulator stops meanwhile, the training
    is left to start-up recovery (or, on PostgreSQL, to the queue) like an interrupted one."""
    try:
        _end_training(backend, project, version, ModelStatus.TRAINING_FAILED, message)
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        if backend.jobs.stopping.is_set():
            return Outcome.INTERRUPTED
        log.warning("cannot record that %s v%s failed yet, the disk is full; retrying in %.1f s", project, version,
                    retry_in)
        backend.jobs.submit_later(retry_in, TRAINING, f"{project}/{version}", record_failure, backend, project,
                                  version, message, min(2 * retry_in, _RETRY_MAX_SECONDS))
        return Outcome.DEFERRED
    return Outcome.FAILED


def _progress(backend: Backend, plan: TrainingPlan) -> Callable[[float, str], None]:
    """An engine progress callback: records the step in the store and the StatusMessage (at most once a
    second, and always the first step: this run's start) and ends training early when the emulator
    shuts down. The first step keeps the plain TRAINING_MESSAGE, as CreateModel and recovery wrote it."""
    started, last = time.time(), [0.0]

    def report(fraction: float, step: str) -> None:
        if backend.jobs.stopping.is_set():
            raise training_process.Interrupted
        now = time.monotonic()
        if last[0] and now - last[0] < _PROGRESS_INTERVAL:
            return
        message = f"Training in progress: {step} ({fraction:.0%})." if last[0] else TRAINING_MESSAGE
        last[0] = now
        backend.store.models.set_progress(plan.project, plan.version, ModelStatus.TRAINING,
                                          TrainingProgress(started, step, fraction), message)

    return report


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
def resume_training(backend: Backend) -> None:
    """Models left TRAINING by a stop or a crash train again from their saved plan (or go on
    waiting for their datasets); one without a plan can only be failed."""
    for row in backend.store.models.all_in((ModelStatus.TRAINING,)):
        plan = load_plan(backend, row.project, row.version)
        if plan is None:
            _fail_without_plan(backend, row.project, row.version)
            continue
        if not plan.waiting:
            _training_message(backend, row.project, row.version, TRAINING_MESSAGE)
        submit(backend, plan, resumed=True)
