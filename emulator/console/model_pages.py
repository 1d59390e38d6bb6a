"""Models: train, the model page (live status, metrics, test results), hosting, compare versions."""
from __future__ import annotations

import math
import re
import time
from typing import Any, cast

from flask import Response, jsonify, render_template, request, url_for

from emulator.api.errors import ResourceNotFoundException, ValidationException
from emulator.api.statuses import MODEL_IN_TRANSITION, ModelStatus
from emulator.console.blueprint import back_to, backend, blueprint, call
from emulator.console.bucket import console_bucket
from emulator.console.colours import label_colours
from emulator.console.model_results import (
    REPORT_LABELS,
    THRESHOLD,
    TestResults,
    compare,
    engine_facts,
    read_test_results,
)
from emulator.console.objects import label_areas, overlays
from emulator.console.project_pages import list_models
from emulator.console.readiness import training_readiness
from emulator.console.words import count

# Statuses a model leaves by itself; the model page polls while it is in one of them.
TRANSITIONS = MODEL_IN_TRANSITION
# Statuses from which the model page offers Retrain (CreateModel again on the current datasets).
RETRAINABLE = (ModelStatus.TRAINED, ModelStatus.TRAINING_FAILED, ModelStatus.HOSTED, ModelStatus.HOSTING_FAILED)
HISTOGRAM_BINS = 20
_PERCENT = re.compile(r"\((\d+(?:\.\d+)?)%\)")
_STEP_COUNT = re.compile(r"\s*\(\d+/\d+\)$")  # "extracting features (42/62)": the step's own count
# Below these, an estimate of the time left would be mostly noise.
MIN_FRACTION_FOR_ESTIMATE, MIN_SECONDS_FOR_ESTIMATE = 0.05, 5.0


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
    results = read_test_results(backend(), model)
    facts = engine_facts(backend(), project, version)
    return render_template("model.html", project_name=project, model=model, polling=model["Status"] in TRANSITIONS,
                           results=results, live=live_state(project, model), facts=facts,
                           threshold=THRESHOLD, report_labels=REPORT_LABELS,
                           histogram=histogram(results) if results else None,
                           colours=label_colours(facts.label_colors if facts else {}),
                           retrainable=model["Status"] in RETRAINABLE,
                           readiness=training_readiness(backend(), project) if model["Status"] in RETRAINABLE else None)


def live_state(project: str, model: dict[str, Any]) -> dict[str, Any]:
    """What the model page shows of a model in transition, and its status endpoint returns: the
    training job's stage and start (epoch seconds; the page counts the elapsed time) and progress."""
    state: dict[str, Any] = {"Status": model["Status"], "StatusMessage": model.get("StatusMessage") or "",
                             "settled": model["Status"] not in TRANSITIONS, "stage": "", "started": None,
                             "progress": None, "percent": "", "remaining": ""}
    if model["Status"] == ModelStatus.TRAINING:
        job = backend().store.models.progress(project, int(model["ModelVersion"]))
        if job is not None:
            # One progress figure: the job's share done. The StatusMessage says the same, written at most
            # once a second, and the stage's own "(n/m)" counts a single step: showing them too would put
            # two or three disagreeing counters on the page.
            state |= {"StatusMessage": "", "stage": _STEP_COUNT.sub("", job.stage), "started": job.started,
                      "progress": job.fraction, "percent": f"{job.fraction:.0%} done",
                      "remaining": time_left(time.time() - job.started, job.fraction)}
        else:  # queued behind other jobs (or trained by a release before the progress table)
            found = _PERCENT.search(state["StatusMessage"])
            state |= {"stage": "waiting for a training slot" if found is None else "training",
                      "progress": float(found.group(1)) / 100 if found else None}
    return state


def time_left(elapsed_s: float, fraction: float) -> str:
    """A rough estimate of the training time left, assuming the rest goes as fast as what is done.
    Said in whole minutes: the stages differ in speed, so seconds would promise too much."""
    if fraction < MIN_FRACTION_FOR_ESTIMATE or elapsed_s < MIN_SECONDS_FOR_ESTIMATE:
        return "estimating the time left"
    left = elapsed_s * (1.0 - fraction) / fraction
    return "less than a minute left" if left < 60 else f"about {count(round(left / 60), 'minute')} left"


def histogram(results: TestResults) -> dict[str, Any]:
    """The test images' anomaly scores in HISTOGRAM_BINS bins over 0 to 1, counted by ground truth,
    with the tallest bar's count and the count axis's ticks (whole numbers, at most five)."""
    bins = [{"low": i / HISTOGRAM_BINS, "high": (i + 1) / HISTOGRAM_BINS, "normal": 0, "anomaly": 0}
            for i in range(HISTOGRAM_BINS)]
    for image in results.images:
        if image.actual in ("normal", "anomaly"):
            bins[min(int(image.score * HISTOGRAM_BINS), HISTOGRAM_BINS - 1)][image.actual] += 1
    tallest = max(1, *(int(b["normal"] + b["anomaly"]) for b in bins))
    step = math.ceil(tallest / 4)
    top = step * math.ceil(tallest / step)
    return {"bins": bins, "top": top, "ticks": list(range(0, top + 1, step))}


@blueprint.get("/projects/<project>/models/<version>/status.json")
def model_status(project: str, version: str) -> Response:
    return jsonify(live_state(project, describe(project, version)))


@blueprint.get("/projects/<project>/models/<version>/results/<int:index>")
def test_image_page(project: str, version: str, index: int) -> str:
    """One test image in full: zoom and pan, the heatmap, predicted and true masks as overlays."""
    model = describe(project, version)
    results = read_test_results(backend(), model)
    if results is None or not 0 <= index < len(results.images):
        raise ResourceNotFoundException(f"Model {version} of project {project} has no test result {index}.")
    image = results.images[index]
    facts = engine_facts(backend(), project, version)
    model_colours = facts.label_colors if facts else {}
    areas = label_areas(image.predicted_mask_ref, model_colours) if image.predicted_mask_ref and model_colours else {}
    return render_template(
        "image.html", project_name=project, title=f"Test image {index + 1} of {len(results.images)}",
        crumbs=[(f"Model {version}", url_for("console.model_page", project=project, version=version))],
        source_ref=image.source_ref, areas=areas,
        overlays=overlays(image.heatmap_ref, (image.predicted_mask_ref, model_colours),
                          (image.mask_ref, image.label_colors)),
        colours=label_colours([*model_colours, *image.label_colors]),
        facts={"Actual label": image.actual, "Predicted label": image.predicted, "Confidence": image.confidence,
               "Anomaly score": image.score, "Correct": image.correct},
        previous=url_for("console.test_image_page", project=project, version=version, index=index - 1)
        if index else None,
        next=url_for("console.test_image_page", project=project, version=version, index=index + 1)
        if index + 1 < len(results.images) else None)


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
    results = [read_test_results(backend(), m) for m in models]
    usable = [r for r in results if r is not None and not r.problem]
    return render_template("compare.html", project_name=project, versions=versions, models=models, results=results,
                           comparison=compare(*usable) if len(usable) == 2 else None)
