"""Models: CreateModel, DescribeModel, ListModels, DeleteModel, StartModel and StopModel.

A model's life (model-train.md, run-start-model.md, run-stop-model.md, delete-model.md):

    CreateModel -> TRAINING -> TRAINED | TRAINING_FAILED          (emulator.services.training_job, background)
    StartModel  (TRAINED | HOSTING_FAILED) -> STARTING_HOSTING -> HOSTED | HOSTING_FAILED
    StopModel   (HOSTED | HOSTING_FAILED)  -> STOPPING_HOSTING -> TRAINED
    DeleteModel refused while the model trains, is hosted or changes hosting state.

Every state change is a checked transition inside one transaction, so concurrent calls cannot both
start (or stop, or delete) the same model.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
from concurrent.futures import Future
from typing import Any

from emulator.api.errors import ConflictException, ValidationException
from emulator.api.pagination import decode_token, page, page_size
from emulator.api.registry import OperationTable
from emulator.api.statuses import PACKAGING_JOB_ACTIVE, ModelStatus, ResourceType
from emulator.backend import Backend
from emulator.services import hosting, training_job, training_plan
from emulator.services.lookups import engine_dir, get_model, get_project, model_arn, model_dir
from emulator.services.tags import apply_tags

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


def conflict(row: sqlite3.Row, action: str) -> ConflictException:
    """The ConflictException for an action the model's current status does not allow."""
    return ConflictException(
        f"Can't {action} model version {row['version']} of project {row['project']}: its status is "
        f"{row['status']} (the model {_WHY_NOT[row['status']]}).",
        resource_id=str(row["version"]), resource_type=ResourceType.MODEL)


def _metadata(row: sqlite3.Row) -> dict[str, Any]:
    metadata = {
        "CreationTimestamp": row["created_at"],
        "ModelVersion": str(row["version"]),
        "ModelArn": row["arn"],
        "Description": row["description"],
        "Status": row["status"],
        "StatusMessage": row["status_message"],
    }
    if row["performance"]:
        metadata["Performance"] = json.loads(row["performance"])
    return metadata


def _description(row: sqlite3.Row) -> dict[str, Any]:
    location = {"Bucket": row["output_bucket"]}
    if row["output_prefix"] is not None:
        location["Prefix"] = row["output_prefix"]
    return {
        **_metadata(row),
        "OutputConfig": {"S3Location": location},
        "EvaluationManifest": json.loads(row["evaluation_manifest"]) if row["evaluation_manifest"] else None,
        "EvaluationResult": json.loads(row["evaluation_result"]) if row["evaluation_result"] else None,
        "EvaluationEndTimestamp": row["evaluation_end"],
        "KmsKeyId": row["kms_key_id"],
        "MinInferenceUnits": row["min_inference_units"],
        "MaxInferenceUnits": row["max_inference_units"],
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
    with backend.store.transaction() as db:
        get_project(backend, project)  # still there, now under the write lock
        last = db.execute("SELECT last_version FROM model_versions WHERE project=?", (project,)).fetchone()
        version = (last["last_version"] if last else 0) + 1
        db.execute("INSERT INTO model_versions(project, last_version) VALUES (?, ?) "
                   "ON CONFLICT(project) DO UPDATE SET last_version=excluded.last_version", (project, version))
        arn = model_arn(backend, project, version)
        db.execute(
            "INSERT INTO models(project, version, arn, status, status_message, description, kms_key_id,"
            " output_bucket, output_prefix, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (project, version, arn, TRAINING, message, params.get("Description"),
             params.get("KmsKeyId"), location["Bucket"], location.get("Prefix"), backend.now()))
        apply_tags(db, arn, params.get("Tags") or [])
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
    rows = backend.store.query("SELECT * FROM models WHERE project=? AND version>? ORDER BY version LIMIT ?",
                               (project, after, size + 1))
    shown, token = page(rows, size, lambda row: row["version"])
    return {"Models": [_metadata(row) for row in shown], "NextToken": token}


@operations.operation("DeleteModel")
def delete_model(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    project = params["ProjectName"]
    with backend.store.transaction() as db:
        row = get_model(backend, project, params["ModelVersion"])
        if row["status"] not in _CAN_DELETE:
            raise conflict(row, "delete")
        job = db.execute("SELECT job_name FROM packaging_jobs WHERE project=? AND model_version=? AND status IN "
                         "(?, ?)", (project, row["version"], *PACKAGING_JOB_ACTIVE)).fetchone()
        if job is not None:
            raise ConflictException(
                f"Can't delete model version {row['version']} of project {project}: the model packaging job "
                f"{job['job_name']} is packaging it; wait until the job finishes.",
                resource_id=job["job_name"], resource_type=ResourceType.MODEL_PACKAGE_JOB)
        db.execute("DELETE FROM models WHERE project=? AND version=?", (project, row["version"]))
        db.execute("DELETE FROM tags WHERE resource_arn=?", (row["arn"],))
    shutil.rmtree(model_dir(backend, project, row["version"]), ignore_errors=True)
    return {"ModelArn": row["arn"]}


@operations.operation("StartModel")
def start_model(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    units = params["MinInferenceUnits"]
    max_units = params.get("MaxInferenceUnits", units)
    if max_units < units:
        raise ValidationException(f"MaxInferenceUnits ({max_units}) must be greater than or equal to "
                                  f"MinInferenceUnits ({units}).")
    with backend.store.transaction() as db:
        row = get_model(backend, params["ProjectName"], params["ModelVersion"])
        if row["status"] not in _CAN_START:
            raise conflict(row, "start")
        db.execute("UPDATE models SET status=?, status_message=?, min_inference_units=?, max_inference_units=? "
                   "WHERE project=? AND version=?",
                   (STARTING_HOSTING, f"Hosting is starting with {units} inference unit(s).", units, max_units,
                    row["project"], row["version"]))
    _begin_hosting(backend, row["project"], row["version"], max_units)
    return {"Status": STARTING_HOSTING}


@operations.operation("StopModel")
def stop_model(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    with backend.store.transaction() as db:
        row = get_model(backend, params["ProjectName"], params["ModelVersion"])
        if row["status"] not in _CAN_STOP:
            raise conflict(row, "stop")
        db.execute("UPDATE models SET status=?, status_message=? WHERE project=? AND version=?",
                   (STOPPING_HOSTING, "Hosting is stopping.", row["project"], row["version"]))
    key = (row["project"], row["version"])
    hosting.registry(backend).stop_later(key).add_done_callback(lambda _: _stopped(backend, key))
    return {"Status": STOPPING_HOSTING}


def _transition(backend: Backend, key: hosting.ModelKey, expected: tuple[str, ...], status: str,
                message: str, **columns: Any) -> None:
    """Move a model to `status` if it is still in one of the `expected` states (else leave it)."""
    sets = ", ".join(["status=?", "status_message=?", *(f"{name}=?" for name in columns)])
    marks = ",".join("?" * len(expected))
    with backend.store.transaction() as db:
        db.execute(f"UPDATE models SET {sets} WHERE project=? AND version=? AND status IN ({marks})",
                   (status, message, *columns.values(), *key, *expected))


def _begin_hosting(backend: Backend, project: str, version: int, units: int) -> None:
    """Load the model to serve up to `units` requests at once (MaxInferenceUnits: see emulator.services.hosting)."""
    key = (project, version)
    future = hosting.registry(backend).host(key, engine_dir(backend, project, version), units)
    future.add_done_callback(lambda done: _hosting_done(backend, key, done))


def _hosting_done(backend: Backend, key: hosting.ModelKey, done: Future[hosting.HostedModel]) -> None:
    error = done.exception()
    if error is None:
        _transition(backend, key, (STARTING_HOSTING,), HOSTED, "The model is hosted and ready for DetectAnomalies.")
        return
    log.error("hosting %s v%s failed", *key, exc_info=error)
    hosting.registry(backend).stop(key)
    # The engine names the files it could not read; a client is shown them relative to the data dir,
    # never the server's own paths (the log above has them whole).
    reason = str(error).replace(f"{backend.settings.data_dir.resolve()}{os.sep}", "").replace(
        f"{backend.settings.data_dir}{os.sep}", "")
    _transition(backend, key, (STARTING_HOSTING, HOSTED), HOSTING_FAILED,
                f"Hosting failed: the model could not be loaded ({reason}). Start it again, or train a new version.")


def _stopped(backend: Backend, key: hosting.ModelKey) -> None:
    _transition(backend, key, (STOPPING_HOSTING,), TRAINED, "The model is trained and not hosted.",
                min_inference_units=None, max_inference_units=None)


def restore_hosting(backend: Backend) -> None:
    """After a restart: hosted (or starting) models are loaded again; a stop in progress completes."""
    with backend.store.transaction() as db:
        db.execute("UPDATE models SET status=?, status_message=?, min_inference_units=NULL, "
                   "max_inference_units=NULL WHERE status=?",
                   (TRAINED, "The model is trained and not hosted.", STOPPING_HOSTING))
    for row in backend.store.query("SELECT project, version, max_inference_units FROM models WHERE status IN (?, ?)",
                                   (HOSTED, STARTING_HOSTING)):
        _begin_hosting(backend, row["project"], row["version"], row["max_inference_units"])
