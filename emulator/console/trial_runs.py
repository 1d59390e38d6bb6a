"""Trial detections: run a model on new images, keep the predictions, verify them, feed them back.

A trial detection is console state, not an API resource: its rows live in the ``trial_detections``
and ``trial_images`` tables and disappear with the project. The predictions come from the
DetectAnomalies service function, exactly as a client calling the API would get them. A model that
is trained but not hosted is started for the trial (one inference unit) and stopped when the last
trial running on it ends, because the real console ran trial detections on trained models without
asking the user to host them.
"""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from emulator.api.errors import ConflictException, ResourceNotFoundException, ServiceError, ValidationException
from emulator.api.statuses import ModelStatus, ResourceType
from emulator.backend import Backend
from emulator.config import INFERENCE
from emulator.console.bucket import console_bucket
from emulator.console.entries import labelled_line, put_lines
from emulator.console.model_results import anomaly_score
from emulator.console.words import count
from emulator.formats.image_files import CONTENT_TYPES, sniff_format
from emulator.formats.manifests import SEGMENTATION_TYPE
from emulator.jobs import Outcome, handler
from emulator.s3.objects import ObjectNotFound
from emulator.s3.uri import parse_s3_uri, s3_uri, split_s3_location
from emulator.services import artifacts, detection, hosting, model_lifecycle
from emulator.services.evaluation_output import heatmap_png
from emulator.services.lookups import get_model
from emulator.store import records

log = logging.getLogger(__name__)

TRIAL_JOB = "trial"  # the job kind in log lines and metrics
MAX_TRIAL_IMAGES = 2000  # limits.md: images in a trial detection dataset
NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_-]{0,99}")
NAME_RULE = "1 to 100 letters, digits, hyphens and underscores, starting with a letter or digit"  # of NAME
IN_PROGRESS, COMPLETED, FAILED = "IN_PROGRESS", "COMPLETED", "FAILED"
HOSTING_TIMEOUT_S = 300.0
# Models a trial can run on: trained ones, including those being started or stopped (a trial waits
# for that to finish), e.g. while another trial is starting the same model.
TRIAL_MODEL_STATUSES = (ModelStatus.TRAINED, ModelStatus.STARTING_HOSTING, ModelStatus.HOSTED,
                        ModelStatus.STOPPING_HOSTING)
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class TrialImage(records.TrialImage):
    """A trial image as the console shows it: the stored record and what it means."""

    @property
    def predicted(self) -> str | None:
        return None if self.is_anomalous is None else ("anomaly" if self.is_anomalous else "normal")

    @property
    def label_hex(self) -> dict[str, str]:
        """The predicted anomaly labels' mask colours (label -> ``#RRGGBB``), background left out."""
        return {a["Name"]: a["PixelAnomaly"]["Color"] for a in self.anomalies[1:]}

    @property
    def score(self) -> float | None:
        """The anomaly score behind the prediction (None before detection)."""
        if self.confidence is None or self.is_anomalous is None:
            return None
        return anomaly_score(self.is_anomalous, self.confidence)


def _model(backend: Backend, project: str, version: str) -> dict[str, Any]:
    described = model_lifecycle.describe_model(backend, {"ProjectName": project, "ModelVersion": version})
    return cast(dict[str, Any], described["ModelDescription"])


def images_under(backend: Backend, uri: str) -> list[str]:
    """The PNG and JPEG objects under an ``s3://bucket/prefix`` (by name; their bytes are checked when run)."""
    found = split_s3_location(uri.strip())
    if found is None:
        raise ValidationException(f"{uri!r} is not an S3 location of the form s3://bucket/prefix/")
    bucket, prefix = found
    try:
        keys = backend.objects.list_keys(bucket, prefix)
    except ObjectNotFound as missing:
        raise ValidationException(f"The images can't be listed: {missing}.") from None
    refs = [s3_uri(bucket, key) for key in keys if key.lower().endswith(_IMAGE_SUFFIXES)]
    if not refs:
        raise ValidationException(f"There are no .png or .jpg images under {uri}.")
    return refs


def check_new_name(backend: Backend, project: str, name: str) -> None:
    """Refuse an invalid or taken task name (before any image is stored under it)."""
    if not NAME.fullmatch(name):
        raise ValidationException(f"The task name {name!r} is not valid: use {NAME_RULE}.")
    if backend.store.trials.get(project, name) is not None:
        raise _name_taken(project, name)


def create_trial(backend: Backend, project: str, name: str, version: str, source: str, refs: list[str]) -> None:
    """Record a trial detection of `refs` with model `version` and start running it."""
    check_new_name(backend, project, name)
    if not 1 <= len(refs) <= MAX_TRIAL_IMAGES:
        raise ValidationException(f"A trial detection needs 1 to {MAX_TRIAL_IMAGES} images; {len(refs)} were given.")
    model = _model(backend, project, version)
    if model["Status"] not in TRIAL_MODEL_STATUSES:
        raise ConflictException(f"Model {version} is {model['Status']}; a trial detection needs a trained model.",
                                resource_id=version, resource_type=ResourceType.MODEL)
    trial = records.Trial(project=project, name=name, model_version=int(version), source=source, status=IN_PROGRESS,
                          status_message=f"Waiting to detect {count(len(refs), 'image')}.", created_at=backend.now())
    if not backend.store.trials.add(trial, refs):
        raise _name_taken(project, name)
    backend.jobs.submit(TRIAL_JOB, f"{project}/{name}", run_trial, backend, project, name)


def _name_taken(project: str, name: str) -> ConflictException:
    return ConflictException(f"Project {project} already has a trial detection named {name}.")


def get_trial(backend: Backend, project: str, name: str) -> records.Trial:
    trial = backend.store.trials.get(project, name)
    if trial is None:
        raise ResourceNotFoundException(f"Project {project} has no trial detection named {name}.")
    return trial


def list_trials(backend: Backend, project: str) -> list[records.TrialSummary]:
    return backend.store.trials.summaries(project)


def trial_images(backend: Backend, project: str, name: str) -> list[TrialImage]:
    return [TrialImage(**vars(image)) for image in backend.store.trials.images(project, name)]


# ------------------------------------------------------------------------------------------- the job
@handler
def run_trial(backend: Backend, project: str, name: str) -> Outcome:
    """Detect anomalies in every image of the trial not yet done; never raises (the outcome is the status)."""
    try:
        trial = get_trial(backend, project, name)
        if trial.status != IN_PROGRESS:  # a second run of a finished trial: nothing to do
            return Outcome.SKIPPED
        version = str(trial.model_version)
        _use_model(backend, project, version, name)
        try:
            with _private_copy(backend, project, version) as served:
                pending = backend.store.trials.pending(project, name)
                for number, ref in enumerate(pending, start=1):
                    _detect_one(backend, project, name, version, ref, served)
                    _set_status(backend, project, name, IN_PROGRESS,
                                f"Detected {number} of {count(len(pending), 'image')}.")
        finally:
            _done_with_model(backend, project, version, name)
        _set_status(backend, project, name, COMPLETED, _summary(backend, project, name))
    except ServiceError as refused:  # (if the project was deleted meanwhile, this updates nothing)
        _set_status(backend, project, name, FAILED, f"The trial detection failed: {refused.message}")
        return Outcome.FAILED
    except Exception:  # a bug of ours: the traceback goes to the operator's log, not into the status
        log.exception("trial detection %s/%s failed", project, name)
        _set_status(backend, project, name, FAILED,
                    "The trial detection failed with an internal error; the server log has the details.")
        return Outcome.FAILED
    return Outcome.SUCCEEDED


# The model a trial runs on is hosted as StartModel hosts it, for every node of a fleet to see. A
# trained model is started by a trial that needs it and recorded in the store as started by trials
# (`trial_hostings`); the trial that ends last, on whichever node, stops it, which it decides from the
# trials still IN_PROGRESS on the model, in the same write transaction as the StopModel. A model hosted
# by a StartModel of the user's has no such record, and no trial stops it.
def _use_model(backend: Backend, project: str, version: str, trial: str) -> None:
    """Use the model for a trial: host it if it is only trained, and wait until it is hosted."""
    store = backend.store
    while True:
        _wait(backend, project, version, ModelStatus.STARTING_HOSTING, ModelStatus.STOPPING_HOSTING)
        with store.transaction():  # (another node's trial may have started or stopped it meanwhile)
            status = get_model(backend, project, version).status
            if status not in (ModelStatus.STARTING_HOSTING, ModelStatus.HOSTED, ModelStatus.STOPPING_HOSTING):
                # StartModel itself refuses the states a model can't be started from
                model_lifecycle.start_model(backend, {"ProjectName": project, "ModelVersion": version,
                                                      "MinInferenceUnits": 1})
                store.trials.hosting_started(project, int(version))
        if status != ModelStatus.STOPPING_HOSTING:
            break
    hosting.reconciler(backend).wake()  # its wake inside StartModel came before the commit
    try:
        model = _wait(backend, project, version, ModelStatus.STARTING_HOSTING)
        if model["Status"] != ModelStatus.HOSTED:
            raise ValidationException(f"model {version} could not be started ({model['Status']}: "
                                      f"{model.get('StatusMessage') or 'no reason given'}).")
    except BaseException:
        _done_with_model(backend, project, version, trial)
        raise


def _done_with_model(backend: Backend, project: str, version: str, trial: str) -> None:
    """A trial is done with the model: the last trial running on it stops it if a trial started it."""
    store = backend.store
    with store.transaction():
        if not store.trials.last_out(project, int(version), trial, IN_PROGRESS):
            return
        try:
            model_lifecycle.stop_model(backend, {"ProjectName": project, "ModelVersion": version})
        except ServiceError as refused:  # e.g. someone stopped or deleted it meanwhile
            log.info("trial hosting of %s/%s not stopped: %s", project, version, refused.message)
    hosting.reconciler(backend).wake()  # its wake inside StopModel came before the commit


def _wait(backend: Backend, project: str, version: str, *busy: str) -> dict[str, Any]:
    """The model once its status is none of `busy` (a start or stop in progress has finished)."""
    deadline = time.monotonic() + HOSTING_TIMEOUT_S
    while (model := _model(backend, project, version))["Status"] in busy:
        if time.monotonic() > deadline:
            raise ValidationException(f"model {version} did not finish {model['Status']} within "
                                      f"{HOSTING_TIMEOUT_S:.0f} s.")
        time.sleep(0.1)
    return model


@contextmanager
def _private_copy(backend: Backend, project: str, version: str) -> Iterator[hosting.HostedModel | None]:
    """The copy of the model a trial job predicts with: None on a node with the inference role (the
    node's hosted copy), else one the job loads from the model's artifact for its own duration, as a
    worker-only node of a split fleet runs trial jobs but hosts nothing. That copy is not recorded in
    ``model_hostings``: it serves this job, not DetectAnomalies."""
    if INFERENCE in backend.settings.roles:
        yield None
        return
    try:
        served = hosting.HostedModel(artifacts.local_engine(backend, project, int(version)), 1,
                                     f"{project}-{version}-trial", backend.settings.device)
    except Exception as error:  # noqa: BLE001 - the artifact is missing or unusable: the trial says why
        log.exception("trial detection %s/%s could not load the model on this node", project, version)
        raise ValidationException(f"model {version} could not be loaded for the trial "
                                  f"({hosting.client_reason(backend, error)}).") from None
    try:
        yield served
    finally:
        served.close()


def _detect_one(backend: Backend, project: str, name: str, version: str, ref: str,
                served: hosting.HostedModel | None) -> None:
    bucket, key = parse_s3_uri(ref)  # refs are built as S3 URIs
    trials = backend.store.trials
    try:
        body = backend.objects.get(bucket, key)
        found = sniff_format(body)
        if found is None:
            raise ValidationException(f"{ref} is not a PNG or JPEG image.")
        result, prediction = detection.detect(backend, {"ProjectName": project, "ModelVersion": version,
                                                        "Body": body, "ContentType": CONTENT_TYPES[found]},
                                              served)
    except ObjectNotFound as missing:
        trials.record_image(project, name, ref, error=str(missing))
    except ValidationException as refused:
        trials.record_image(project, name, ref, error=refused.message)
    else:
        detected = result["DetectAnomalyResult"]
        image_name = key.rsplit("/", 1)[-1]

        def output(kind: str) -> str:
            return f"trial-results/{project}/{name}/{kind}/{image_name}.png"

        segmented = "AnomalyMask" in detected
        trials.record_image(
            project, name, ref, is_anomalous=detected["IsAnomalous"], confidence=detected["Confidence"],
            heatmap_ref=_keep(backend, output("heatmaps"), heatmap_png(prediction.anomaly_map)),
            mask_ref=_keep(backend, output("masks"), detected["AnomalyMask"]) if segmented else None,
            anomalies=detected["Anomalies"] if segmented else None)


def _keep(backend: Backend, key: str, png_data: bytes) -> str:
    """Store a PNG the trial produced in the console bucket; its S3 URI. Outputs go under
    ``trial-results/``, apart from the uploaded images under ``trials/``: a later trial on that
    prefix must find the images only."""
    bucket = console_bucket(backend)
    backend.objects.put(bucket, key, png_data, CONTENT_TYPES["PNG"])
    return s3_uri(bucket, key)


def _summary(backend: Backend, project: str, name: str) -> str:
    images = trial_images(backend, project, name)
    anomalous = sum(1 for i in images if i.is_anomalous)
    failed = [i for i in images if i.error]
    text = f"Detected {count(len(images) - len(failed), 'image')}: {anomalous} anomalous."
    if failed:
        text += f" {count(len(failed), 'image')} could not be analysed (see each image)."
    return text


def _set_status(backend: Backend, project: str, name: str, status: str, message: str) -> None:
    """Record a running trial's progress or outcome (a finished trial keeps its outcome)."""
    backend.store.trials.transition(project, name, (IN_PROGRESS,), status, message)


def resume_interrupted(backend: Backend) -> None:
    """Run again the trials a restart interrupted (images already detected are kept)."""
    for trial in backend.store.trials.all_in(IN_PROGRESS):
        backend.jobs.submit(TRIAL_JOB, f"{trial.project}/{trial.name}", run_trial, backend,
                            trial.project, trial.name, resumed=True)


# ------------------------------------------------------------------------------- verify and feed back
def verify(backend: Backend, project: str, name: str, verdicts: dict[str, str]) -> int:
    """Record the user's label for images: ``{source_ref: 'normal' | 'anomaly'}``. Returns how many."""
    get_trial(backend, project, name)
    bad = {label for label in verdicts.values() if label not in ("normal", "anomaly")}
    if bad:
        raise ValidationException(f"A verified label must be normal or anomaly, not {sorted(bad)[0]!r}.")
    return backend.store.trials.verify(project, name, verdicts)


def add_verified_to_dataset(backend: Backend, project: str, name: str) -> int:
    """Add the verified images not added yet to the training dataset, labelled as verified.

    An anomaly whose prediction the user confirmed keeps the predicted mask as its segmentation label,
    so the image can also teach a segmentation model. Returns the number of images added.
    """
    todo = [i for i in trial_images(backend, project, name) if i.verified and not i.added]
    if not todo:
        raise ValidationException("There are no verified images that have not been added yet; verify some first.")
    put_lines(backend, project, "train", [_dataset_line(image) for image in todo])
    backend.store.trials.mark_added(project, name, [image.source_ref for image in todo])
    return len(todo)


def _dataset_line(image: TrialImage) -> dict[str, Any]:
    line = labelled_line(None, image.source_ref, image.verified or "")
    if image.verified == "anomaly" and image.predicted == "anomaly" and image.mask_ref and len(image.anomalies) > 1:
        line["anomaly-mask-ref"] = image.mask_ref
        line["anomaly-mask-ref-metadata"] = {
            "internal-color-map": {
                str(index): {"class-name": "BACKGROUND" if index == 0 else anomaly["Name"],
                             "hex-color": anomaly["PixelAnomaly"]["Color"]}
                for index, anomaly in enumerate(image.anomalies)},
            "type": SEGMENTATION_TYPE, "human-annotated": "yes", "job-name": "labeling-job/trial-detection",
        }
    return line
