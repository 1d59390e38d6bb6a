"""Trial detections: the list and the run form, one trial's predictions, verification, feedback."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Response, jsonify, render_template, request, url_for

from emulator.api.errors import ResourceNotFoundException, ValidationException
from emulator.console import trial_runs
from emulator.console.blueprint import back_to, backend, blueprint, call, wants_json
from emulator.console.colours import label_colours
from emulator.console.dataset_pages import store_uploads
from emulator.console.objects import overlays
from emulator.console.project_pages import list_models
from emulator.console.readiness import training_readiness
from emulator.console.words import count, natural_key


@blueprint.get("/projects/<project>/trials")
def trial_list(project: str) -> str:
    call("DescribeProject", ProjectName=project)
    usable = [m for m in list_models(project) if m["Status"] in trial_runs.TRIAL_MODEL_STATUSES]
    return render_template("trials.html", project_name=project, trials=trial_runs.list_trials(backend(), project),
                           models=usable, chosen=request.args.get("version"), name_rule=trial_runs.NAME_RULE)


@blueprint.post("/projects/<project>/trials")
def run_trial(project: str) -> Response:
    """Start a trial detection on uploaded files or on the images under an S3 location."""
    call("DescribeProject", ProjectName=project)
    name = request.form.get("name", "").strip()
    version = request.form.get("version", "")
    location = request.form.get("s3_uri", "").strip()
    trial_runs.check_new_name(backend(), project, name)
    if request.files.getlist("file"):
        source, refs = "upload", store_uploads(f"trials/{project}/{name}/")
    elif location:
        source, refs = location, trial_runs.images_under(backend(), location)
    else:
        raise ValidationException("Choose images from your computer or give an S3 location.")
    trial_runs.create_trial(backend(), project, name, version, source, refs)
    page = url_for("console.trial_page", project=project, trial=name)
    if wants_json():
        return jsonify(redirect=page)
    return back_to(page, notice=f"Trial detection {name} started on {count(len(refs), 'image')}.")


# The trial page's filters (as the real console's: by predicted label or verification state) and sort orders.
TRIAL_FILTERS: dict[str, Callable[[trial_runs.TrialImage], bool]] = {
    "all": lambda image: True,
    "anomaly": lambda image: image.predicted == "anomaly",
    "normal": lambda image: image.predicted == "normal",
    "unverified": lambda image: image.verified is None,
    "incorrect": lambda image: image.verified is not None and image.verified != image.predicted,
}
TRIAL_SORTS: dict[str, Callable[[trial_runs.TrialImage], Any]] = {
    "name": lambda image: natural_key(image.source_ref),
    "confidence": lambda image: (image.confidence is None, image.confidence),  # least sure first
}


@blueprint.get("/projects/<project>/trials/<trial>")
def trial_page(project: str, trial: str) -> str:
    record = trial_runs.get_trial(backend(), project, trial)
    shown, order = request.args.get("filter", "all"), request.args.get("sort", "name")
    if shown not in TRIAL_FILTERS or order not in TRIAL_SORTS:
        raise ValidationException(f"Use a filter of {', '.join(TRIAL_FILTERS)} and a sort of {', '.join(TRIAL_SORTS)}.")
    images = sorted(filter(TRIAL_FILTERS[shown], trial_runs.trial_images(backend(), project, trial)),
                    key=TRIAL_SORTS[order])
    return render_template("trial.html", project_name=project, trial=record, images=images, filters=TRIAL_FILTERS,
                           colours=label_colours(a["Name"] for i in images for a in i.anomalies[1:]),
                           sorts=TRIAL_SORTS, shown=shown, order=order,
                           polling=record.status == trial_runs.IN_PROGRESS,
                           readiness=training_readiness(backend(), project))


@blueprint.get("/projects/<project>/trials/<trial>/image")
def trial_image_page(project: str, trial: str) -> str:
    """One image of a trial (``?ref=<source-ref>``) in full: zoom and pan, heatmap and mask overlays."""
    record = trial_runs.get_trial(backend(), project, trial)
    images = sorted(trial_runs.trial_images(backend(), project, trial), key=TRIAL_SORTS["name"])
    refs = [image.source_ref for image in images]
    ref = request.args.get("ref", "")
    if ref not in refs:
        raise ResourceNotFoundException(f"Trial detection {trial} has no image {ref}.")
    index = refs.index(ref)
    image = images[index]
    label_hex = image.label_hex
    return render_template(
        "image.html", project_name=project, title=f"Image {index + 1} of {len(images)}",
        crumbs=[("Trial detections", url_for("console.trial_list", project=project)),
                (record.name, url_for("console.trial_page", project=project, trial=trial))],
        source_ref=ref, overlays=overlays(image.heatmap_ref, (image.mask_ref, label_hex)),
        areas={a["Name"]: a["PixelAnomaly"]["TotalPercentageArea"] for a in image.anomalies[1:]},
        colours=label_colours(label_hex), error=image.error,
        facts={"Predicted label": image.predicted, "Confidence": image.confidence, "Anomaly score": image.score,
               "Verified label": image.verified},
        previous=url_for("console.trial_image_page", project=project, trial=trial, ref=refs[index - 1])
        if index else None,
        next=url_for("console.trial_image_page", project=project, trial=trial, ref=refs[index + 1])
        if index + 1 < len(refs) else None)


@blueprint.get("/projects/<project>/trials/<trial>/status.json")
def trial_status(project: str, trial: str) -> Response:
    record = trial_runs.get_trial(backend(), project, trial)
    return jsonify(Status=record.status, StatusMessage=record.status_message,
                   settled=record.status != trial_runs.IN_PROGRESS)


@blueprint.post("/projects/<project>/trials/<trial>/verify")
def verify_trial(project: str, trial: str) -> Response:
    """Record the labels chosen under each image (fields ``label:<source-ref>``), or, with
    ``all=correct``, confirm every prediction not verified yet."""
    if request.form.get("all") == "correct":
        verdicts = {i.source_ref: i.predicted for i in trial_runs.trial_images(backend(), project, trial)
                    if i.predicted and not i.verified}
    else:
        verdicts = {key.removeprefix("label:"): value for key, value in request.form.items()
                    if key.startswith("label:") and value}
    verified = trial_runs.verify(backend(), project, trial, verdicts)
    return back_to(url_for("console.trial_page", project=project, trial=trial),
                   notice=f"Verified {count(verified, 'image')}.")


@blueprint.post("/projects/<project>/trials/<trial>/add")
def add_trial_images(project: str, trial: str) -> Response:
    added = trial_runs.add_verified_to_dataset(backend(), project, trial)
    return back_to(url_for("console.trial_page", project=project, trial=trial),
                   notice=f"Added {count(added, 'verified image')} to the training dataset. "
                          "Train a new model to use them.")
