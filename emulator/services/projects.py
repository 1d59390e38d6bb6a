"""Projects: CreateProject, DescribeProject, ListProjects, DeleteProject."""
from __future__ import annotations

from typing import Any

from emulator.api.errors import ConflictException
from emulator.api.pagination import decode_token, page, page_size
from emulator.api.registry import OperationTable
from emulator.api.statuses import ResourceType
from emulator.backend import Backend
from emulator.services.datasets import dataset_summaries
from emulator.services.lookups import get_project, project_arn
from emulator.store.records import Project

operations = OperationTable()


def _metadata(project: Project) -> dict[str, Any]:
    return {"ProjectArn": project.arn, "ProjectName": project.name, "CreationTimestamp": project.created_at}


@operations.operation("CreateProject")
def create_project(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    name = params["ProjectName"]
    if not backend.store.projects.add(name, project_arn(backend, name), backend.now()):
        raise ConflictException(f"A project named {name} already exists.", resource_id=name,
                                resource_type=ResourceType.PROJECT)
    return {"ProjectMetadata": _metadata(get_project(backend, name))}


@operations.operation("DescribeProject")
def describe_project(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    row = get_project(backend, params["ProjectName"])
    return {"ProjectDescription": {**_metadata(row), "Datasets": dataset_summaries(backend, row.name)}}


@operations.operation("ListProjects")
def list_projects(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    after = decode_token(params.get("NextToken"), expected=str) or ""
    size = page_size(params.get("MaxResults"))
    rows = backend.store.projects.page(after, size + 1)
    shown, token = page(rows, size, lambda row: row.name)
    result: dict[str, Any] = {"Projects": [_metadata(r) for r in shown]}
    if token is not None:
        result["NextToken"] = token
    return result


@operations.operation("DeleteProject")
def delete_project(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    """Delete a project and its tags. As the service requires (delete-project.md), its models and
    then its datasets must be deleted first; the console deletes them for the user."""
    name = params["ProjectName"]
    with backend.store.transaction():
        row = get_project(backend, name)
        models = backend.store.models.versions(name)
        if models:
            raise ConflictException(
                f"The project {name} still has model version(s) {', '.join(map(str, models))}; delete its "
                "models, then its datasets, before deleting the project.", resource_id=name,
                resource_type=ResourceType.PROJECT)
        datasets = sorted((dataset.dataset_type for dataset in backend.store.datasets.of_project(name)), reverse=True)
        if datasets:
            raise ConflictException(
                f"The project {name} still has a {' and a '.join(datasets)} dataset; delete its datasets with "
                "DeleteDataset before deleting the project.", resource_id=name, resource_type=ResourceType.PROJECT)
        backend.store.projects.delete(name)
        backend.store.tags.remove(row.arn)
    return {"ProjectArn": row.arn}
