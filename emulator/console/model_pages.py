"""Models: train, the model page (live status, metrics, test results), hosting, compare versions."""
from __future__ import annotations

import re
from typing import Any, cast

from flask import Response, jsonify, render_template, request, url_for

from emulator.api.errors import ValidationException
from emulator.api.statuses import MODEL_IN_TRANSITION, ModelStatus
from emulator.console.blueprint import back_to, backend, blueprint, call
from emulator.console.bucket import console_bucket
from emulator.console.model_results import read_test_results
from emulator.console.project_pages import list_models

# Statuses a model leaves by itself; the model page polls while it is in one of them.
TRANSITIONS = MODEL_IN_TRANSITION
_PERCENT = re.compile(r"\((\d+(?:\.\d+)?)%\)")


@blueprint.post("/projects/<project>/models")
def train_model(project: str) -> Response:
    """CreateModel with its output in the console bucket, as the real console trained models."""
    params: dict[str, Any] = {"ProjectName": project,
                              "OutputConfig": {"S3Location": {"Bucket": console_bucket(backend()),
                                                              "Prefix": f"models/{project}/"}}}
    if request.form.get("description", "").strip():
        params["Description"] = request.form["description"].strip()
    version = call("CreateModel", **params)["ModelMetadata"]["ModelVersion"]
    return back_to(url_for("console.model_page", project=project, version=version),
                   notice=f"Training model {version} started.")


def describe(project: str, version: str) -> dict[str, Any]:
    return cast(dict[str, Any], call("DescribeModel", ProjectName=project, ModelVersion=version)["ModelDescription"])


@blueprint.get("/projects/<project>/models/<version>")
def model_page(project: str, version: str) -> str:
    model = describe(project, version)
    return render_template("model.html", project_name=project, model=model, polling=model["Status"] in TRANSITIONS,
                           results=read_test_results(backend(), model), progress=progress_of(model))


def progress_of(model: dict[str, Any]) -> float | None:
    """Training progress as a fraction, from the percentage the training job writes in StatusMessage."""
    found = _PERCENT.search(model.get("StatusMessage") or "") if model["Status"] == ModelStatus.TRAINING else None
    return float(found.group(1)) / 100 if found else None


@blueprint.get("/projects/<project>/models/<version>/status.json")
def model_status(project: str, version: str) -> Response:
    model = describe(project, version)
    return jsonify(Status=model["Status"], StatusMessage=model.get("StatusMessage") or "",
                   progress=progress_of(model), settled=model["Status"] not in TRANSITIONS)


@blueprint.post("/projects/<project>/models/<version>/start")
def start_model(project: str, version: str) -> Response:
    units = request.form.get("units", 1, type=int)
    call("StartModel", ProjectName=project, ModelVersion=version, MinInferenceUnits=units)
    return back_to(url_for("console.model_page", project=project, version=version),
                   notice=f"Starting model {version} with {units} inference unit(s).")


@blueprint.post("/projects/<project>/models/<version>/stop")
def stop_model(project: str, version: str) -> Response:
    call("StopModel", ProjectName=project, ModelVersion=version)
    return back_to(url_for("console.model_page", project=project, version=version),
                   notice=f"Stopping model {version}.")


@blueprint.post("/projects/<project>/models/<version>/delete")
def delete_model(project: str, version: str) -> Response:
    call("DeleteModel", ProjectName=project, ModelVersion=version)
    return back_to(url_for("console.project_page", project=project), notice=f"Model {version} deleted.")


@blueprint.get("/projects/<project>/compare")
def compare_models(project: str) -> str:
    """Two model versions' metrics side by side (the two newest unless chosen)."""
    versions = [m["ModelVersion"] for m in list_models(project)]
    chosen = [request.args.get("a"), request.args.get("b")]
    defaults = (versions[1:2] or versions[:1]) + versions[:1]  # older first, newer second
    picked = [choice or default for choice, default in zip(chosen, defaults, strict=True)] if versions else []
    for version in picked:
        if version not in versions:
            raise ValidationException(f"Project {project} has no model version {version}.")
    models = [describe(project, v) for v in picked]
    return render_template("compare.html", project_name=project, versions=versions, models=models,
                           results=[read_test_results(backend(), m) for m in models])
