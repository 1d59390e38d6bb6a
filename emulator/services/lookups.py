"""Finding resources: ARNs, the rows of projects, datasets and models or the documented 404, and
where a model's files live. Every service module looks resources up through here, so each error
message and ARN format exists once and the service modules need not import one another for it.
"""
from __future__ import annotations

from pathlib import Path

from emulator.api.errors import ResourceNotFoundException
from emulator.api.statuses import ResourceType
from emulator.backend import Backend
from emulator.store.records import Dataset, Model, Project

DATASET_TYPE_NAMES = {"train": "training", "test": "test"}


def project_arn(backend: Backend, name: str) -> str:
    return backend.arn(f"project/{name}")


def model_arn(backend: Backend, project: str, version: int) -> str:
    return backend.arn(f"model/{project}/{version}")


def get_project(backend: Backend, name: str) -> Project:
    """The project, or the ResourceNotFoundException every project-scoped call answers."""
    row = backend.store.projects.get(name)
    if row is None:
        raise ResourceNotFoundException(f"The project {name} does not exist.", resource_id=name,
                                        resource_type=ResourceType.PROJECT)
    return row


def require_dataset(backend: Backend, project: str, dataset_type: str) -> Dataset:
    """The dataset; ResourceNotFoundException for a missing project or dataset."""
    get_project(backend, project)
    row = backend.store.datasets.get(project, dataset_type)
    if row is None:
        raise ResourceNotFoundException(
            f"The project {project} has no {DATASET_TYPE_NAMES.get(dataset_type, dataset_type)} dataset "
            f"({dataset_type}).", resource_id=dataset_type, resource_type=ResourceType.DATASET)
    return row


def get_model(backend: Backend, project: str, version: str) -> Model:
    """The model of a ModelVersion ("latest" is the highest version), or the documented 404s."""
    get_project(backend, project)
    if version == "latest":
        row = backend.store.models.latest(project)
        if row is None:
            raise ResourceNotFoundException(f"Project {project} has no models.", resource_id=project,
                                            resource_type=ResourceType.MODEL)
        return row
    row = backend.store.models.get(project, int(version))
    if row is None:
        raise ResourceNotFoundException(f"Model version {version} does not exist in project {project}.",
                                        resource_id=version, resource_type=ResourceType.MODEL)
    return row


def model_dir(backend: Backend, project: str, version: int) -> Path:
    """The model's local folder: copied images, the training record, the cache of the engine artifact."""
    return backend.settings.models_dir / project / str(version)


def engine_dir(backend: Backend, project: str, version: int) -> Path:
    """The local cache of a model's engine artifact (loads go through `artifacts.local_engine`)."""
    return model_dir(backend, project, version) / "engine"
