"""Projects: the list, create and delete, and a project's dashboard of datasets and models."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Response, render_template, request, url_for

from emulator.console.blueprint import back_to, backend, blueprint, call, call_all
from emulator.console.readiness import training_readiness
from emulator.console.words import natural_key


@dataclass(frozen=True)
class ProjectSummary:
    """A project at a glance: its newest model, its datasets' image counts and a picture of its parts."""

    project: dict[str, Any]  # ListProjects' ProjectMetadata
    latest_model: dict[str, Any] | None  # DescribeModel's ModelDescription of the newest version
    datasets: list[dict[str, Any]]  # DescribeDataset's DatasetDescription, train first
    thumbnail: str | None  # an image of the project (an anomaly where there is one): Entries.picture


@blueprint.get("/")
def project_list() -> str:
    projects = sorted(call_all("ListProjects", "Projects"), key=lambda p: natural_key(p["ProjectName"]))
    return render_template("projects.html", projects=[_summary(p) for p in projects])


def _summary(project: dict[str, Any]) -> ProjectSummary:
    name = project["ProjectName"]
    models = list_models(name)
    latest = call("DescribeModel", ProjectName=name, ModelVersion=models[0]["ModelVersion"])["ModelDescription"] \
        if models else None
    described = project_datasets(call("DescribeProject", ProjectName=name)["ProjectDescription"])
    return ProjectSummary(project, latest, described, backend().store.entries.picture(name))


def project_datasets(description: dict[str, Any]) -> list[dict[str, Any]]:
    """The datasets of a project (DescribeProject's ProjectDescription) as DescribeDataset describes
    them, the training dataset first."""
    project = description["ProjectName"]
    return [call("DescribeDataset", ProjectName=project, DatasetType=d["DatasetType"])["DatasetDescription"]
            for d in sorted(description["Datasets"], key=lambda d: d["DatasetType"], reverse=True)]


@blueprint.post("/projects")
def create_project() -> Response:
    name = request.form.get("name", "").strip()
    call("CreateProject", ProjectName=name)
    return back_to(url_for("console.project_page", project=name), notice=f"Project {name} created.")


@blueprint.post("/projects/<project>/delete")
def delete_project(project: str) -> Response:
    """Delete the models, the datasets and then the project, as the real console did in one step."""
    for model in list_models(project):
        call("DeleteModel", ProjectName=project, ModelVersion=model["ModelVersion"])
    for dataset in call("DescribeProject", ProjectName=project)["ProjectDescription"]["Datasets"]:
        call("DeleteDataset", ProjectName=project, DatasetType=dataset["DatasetType"])
    call("DeleteProject", ProjectName=project)
    return back_to(url_for("console.project_list"), notice=f"Project {project} deleted.")


@blueprint.get("/projects/<project>")
def project_page(project: str) -> str:
    description = call("DescribeProject", ProjectName=project)["ProjectDescription"]
    models = [call("DescribeModel", ProjectName=project, ModelVersion=m["ModelVersion"])["ModelDescription"]
              for m in list_models(project)]
    return render_template("project.html", project=description, datasets=project_datasets(description),
                           models=models,
                           readiness=training_readiness(backend(), project))


def list_models(project: str) -> list[dict[str, Any]]:
    """Every model of `project`, newest version first."""
    models = call_all("ListModels", "Models", ProjectName=project)
    return sorted(models, key=lambda m: int(m["ModelVersion"]), reverse=True)
