"""Models: CreateModel, DescribeModel, ListModels, DeleteModel, StartModel and StopModel.

A model's life (model-train.md, run-start-model.md, run-stop-model.md, delete-model.md):

    CreateModel -> TRAINING -> TRAINED | TRAINING_FAILED          (emulator.services.training_job, background)
    StartModel  (TRAINED | HOSTING_FAILED) -> STARTING_HOSTING -> HOSTED | HOSTING_FAILED   (emulator.services.hosting)
    StopModel   (HOSTED | HOSTING_FAILED)  -> STOPPING_HOSTING -> TRAINED
    DeleteModel refused while the model trains, is hosted or changes hosting state.

Every state change is a guarded transition (`Models.transition`: it applies only from the statuses
expected), so concurrent calls cannot both start (or stop, or delete) the same model.
"""
from __future__ import annotations

import logging
import shutil
from typing import Any

from emulator.api.errors import ConflictException, ValidationException
from emulator.api.pagination import decode_token, page, page_size
from emulator.api.registry import OperationTable
from emulator.api.statuses import PACKAGING_JOB_ACTIVE, ModelStatus, ResourceType
from emulator.backend import Backend
from emulator.s3.objects import ObjectNotFound
from emulator.services import artifacts, hosting, training_job, training_plan
from emulator.services.lookups import get_model, get_project, model_arn, model_dir
from emulator.services.tags import apply_tags
from emulator.store.records import Model

operations = OperationTable()

log = logging.getLogger(__name__)

TRAINING, TRAINED, TRAINING_FAILED = ModelStatus.TRAINING, ModelStatus.TRAINED, ModelStatus.TRAINING_FAILED
STARTING_HOSTING, HOSTED, HOSTING_FAILED, STOPPING_HOSTING = (
    ModelStatus.STARTING_HOSTING, ModelStatus.HOSTED, ModelStatus.HOSTING_FAILED, ModelStatus.STOPPING_HOSTING)
_CAN_START = (TRAINED, HOSTING_FAILED)
_CAN_STOP = (HOSTED, HOSTING_FAILED)
_CAN_DELETE = (TRAINED, TRAINING_FAILED, HOSTING_FAILED)
_WHY_NOT = {
    TRAINING: "is still training; wait until training finishes",
    TRAINING_FAILED: "failed to train and can't be hosted; train a new version with CreateModel",
    TRAINED: "is not hosted",
    STARTING_HOSTING: "is starting; wait until its status is HOSTED",
    HOSTED: "is hosted; stop it with StopModel first",
    HOSTING_FAILED: "failed to start hosting",
    STOPPING_HOSTING: "is stopping; wait until its status is TRAINED",
}


def conflict(model: Model, action: str) -> ConflictException:
    """The ConflictException for an action the model's current status does not allow."""
    return ConflictException(
        f"Can't {action} model version {model.version} of project {model.project}: its status is "
        f"{model.status} (the model {_WHY_NOT[ModelStatus(model.status)]}).",
        resource_id=str(model.version), resource_type=ResourceType.MODEL)


def _metadata(model: Model) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "CreationTimestamp": model.created_at,
        "ModelVersion": str(model.version),
        "ModelArn": model.arn,
        "Description": model.description,
        "Status": model.status,
        "StatusMessage": model.status_message,
    }
    if model.performance:
        metadata["Performance"] = model.performance
    return metadata


def _description(model: Model) -> dict[str, Any]:
    location = {"Bucket": model.output_bucket}
    if model.output_prefix is not None:
        location["Prefix"] = model.output_prefix
    return {
        **_metadata(model),
        "OutputConfig": {"S3Location": location},
        "EvaluationManifest": model.evaluation_manifest or None,
        "EvaluationResult": model.evaluation_result or None,
        "EvaluationEndTimestamp": model.evaluation_end,
        "KmsKeyId": model.kms_key_id,
        "MinInferenceUnits": model.min_inference_units,
        "MaxInferenceUnits": model.max_inference_units,
    }


@operations.operation("CreateModel")
def create_model(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    """Train a new version. A project whose datasets are still being imported or updated is accepted
    (see emulator.services.training_job): the model waits, TRAINING, and starts when they finish."""
    project = params["ProjectName"]
    get_project(backend, project)
    busy = training_plan.busy_dataset(backend, project)
    if busy is None:
        train, test, auto_split, label_colors = training_plan.plan_training(backend, project)
        message = training_job.TRAINING_MESSAGE
    else:
        training_plan.require_train_dataset(backend, project)
        train, test, auto_split, label_colors = [], [], False, {}
        message = f"Training in progress: waiting for the {busy} to finish before training starts."
    location = params["OutputConfig"]["S3Location"]
    with backend.store.transaction():
        get_project(backend, project)  # still there, now under the write lock
        version = backend.store.models.next_version(project)
        arn = model_arn(backend, project, version)
        backend.store.models.add(Model(
            project=project, version=version, arn=arn, status=TRAINING, status_message=message,
            description=params.get("Description"), kms_key_id=params.get("KmsKeyId"),
            output_bucket=location["Bucket"], output_prefix=location.get("Prefix"), created_at=backend.now(),
            performance=None, evaluation_manifest=None, evaluation_result=None, evaluation_end=None,
            min_inference_units=None, max_inference_units=None))
        apply_tags(backend, arn, params.get("Tags") or [])
        plan = training_plan.TrainingPlan(
            project=project, version=version, model_arn=arn, train=train, test=test, auto_split=auto_split,
            label_colors=label_colors, output_bucket=location["Bucket"], output_prefix=location.get("Prefix") or "",
            waiting=busy is not None)
        # Saved before the row commits, so a committed TRAINING model always has its plan. Leftovers
        # of a deleted project of the same name go first (a version number is never reused otherwise).
        shutil.rmtree(model_dir(backend, project, version), ignore_errors=True)
        training_plan.save_plan(backend, plan)
    response = {"ModelMetadata": _metadata(get_model(backend, project, str(version)))}
    training_job.submit(backend, plan)
    return response


@operations.operation("DescribeModel")
def describe_model(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    return {"ModelDescription": _description(get_model(backend, params["ProjectName"], params["ModelVersion"]))}


@operations.operation("ListModels")
def list_models(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    project = params["ProjectName"]
    get_project(backend, project)
    after = decode_token(params.get("NextToken"), expected=int) or 0
    size = page_size(params.get("MaxResults"))
    rows = backend.store.models.page(project, after, size + 1)
    shown, token = page(rows, size, lambda row: row.version)
    return {"Models": [_metadata(row) for row in shown], "NextToken": token}


@operations.operation("DeleteModel")
def delete_model(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    project = params["ProjectName"]
    with backend.store.transaction():
        row = get_model(backend, project, params["ModelVersion"])
        if row.status not in _CAN_DELETE:
            raise conflict(row, "delete")
        jobs = backend.store.packaging_jobs.all_in(PACKAGING_JOB_ACTIVE, project=project, model_version=row.version)
        if jobs:
            raise ConflictException(
                f"Can't delete model version {row.version} of project {project}: the model packaging job "
                f"{jobs[0].job_name} is packaging it; wait until the job finishes.",
                resource_id=jobs[0].job_name, resource_type=ResourceType.MODEL_PACKAGE_JOB)
        backend.store.models.delete(project, row.version)
        backend.store.tags.remove(row.arn)
    shutil.rmtree(model_dir(backend, project, row.version), ignore_errors=True)
    try:
        artifacts.remove(backend, project, row.version)
    except ObjectNotFound as exc:  # the model is deleted; its objects stay until the store answers again
        log.warning("the stored artifact of %s v%s could not be deleted: %s", project, row.version, exc)
    return {"ModelArn": row.arn}


@operations.operation("StartModel")
def start_model(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    units = params["MinInferenceUnits"]
    max_units = params.get("MaxInferenceUnits", units)
    if max_units < units:
        raise ValidationException(f"MaxInferenceUnits ({max_units}) must be greater than or equal to "
                                  f"MinInferenceUnits ({units}).")
    with backend.store.transaction():
        row = get_model(backend, params["ProjectName"], params["ModelVersion"])
        if not backend.store.models.transition(row.project, row.version, _CAN_START, STARTING_HOSTING,
                                               f"Hosting is starting with {units} inference unit(s).",
                                               min_inference_units=units, max_inference_units=max_units):
            raise conflict(row, "start")
        backend.store.hostings.clear(row.project, row.version)  # a new start: earlier failures don't count
        # Hosted by this start, not by an earlier trial's: no trial stops it (a trial that starts the
        # model records itself after this, in the same transaction).
        backend.store.trials.forget_hosting(row.project, row.version)
        backend.store.hostings.announce()  # every inference node loads it
    hosting.reconciler(backend).wake()
    return {"Status": STARTING_HOSTING}


@operations.operation("StopModel")
def stop_model(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    with backend.store.transaction():
        row = get_model(backend, params["ProjectName"], params["ModelVersion"])
        if not backend.store.models.transition(row.project, row.version, _CAN_STOP, STOPPING_HOSTING,
                                               "Hosting is stopping."):
            raise conflict(row, "stop")
        backend.store.hostings.announce()  # every inference node unloads it; TRAINED once none holds it
    hosting.reconciler(backend).wake()
    return {"Status": STOPPING_HOSTING}
