"""The statuses and resource types of the service model, as enums that are checked against it.

The members are spelled out so that code and type checkers can name them (``ModelStatus.HOSTED``),
and each enum is compared with its shape in the botocore model when this module is imported: a
model that gains, loses or renames a value stops the emulator at start-up instead of letting a
retyped string drift. Being `StrEnum`s, the members are the strings the API returns and the store
keeps.
"""
from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import TypeVar

from emulator.api.servicemodel import service_model

E = TypeVar("E", bound=type[StrEnum])


def _from_model(shape: str) -> Callable[[E], E]:
    """Class decorator: the enum's values must be exactly those of the model's `shape`."""

    def check(enum: E) -> E:
        modelled = list(service_model().shape_for(shape).enum)
        declared = [member.value for member in enum]
        if sorted(declared) != sorted(modelled):
            raise RuntimeError(f"{enum.__name__} {declared} does not match the service model's {shape} {modelled}")
        return enum

    return check


@_from_model("ModelStatus")
class ModelStatus(StrEnum):
    TRAINING = "TRAINING"
    TRAINED = "TRAINED"
    TRAINING_FAILED = "TRAINING_FAILED"
    STARTING_HOSTING = "STARTING_HOSTING"
    HOSTED = "HOSTED"
    HOSTING_FAILED = "HOSTING_FAILED"
    STOPPING_HOSTING = "STOPPING_HOSTING"
    SYSTEM_UPDATING = "SYSTEM_UPDATING"
    DELETING = "DELETING"


@_from_model("DatasetStatus")
class DatasetStatus(StrEnum):
    CREATE_IN_PROGRESS = "CREATE_IN_PROGRESS"
    CREATE_COMPLETE = "CREATE_COMPLETE"
    CREATE_FAILED = "CREATE_FAILED"
    UPDATE_IN_PROGRESS = "UPDATE_IN_PROGRESS"
    UPDATE_COMPLETE = "UPDATE_COMPLETE"
    UPDATE_FAILED_ROLLBACK_IN_PROGRESS = "UPDATE_FAILED_ROLLBACK_IN_PROGRESS"
    UPDATE_FAILED_ROLLBACK_COMPLETE = "UPDATE_FAILED_ROLLBACK_COMPLETE"
    DELETE_IN_PROGRESS = "DELETE_IN_PROGRESS"
    DELETE_COMPLETE = "DELETE_COMPLETE"
    DELETE_FAILED = "DELETE_FAILED"


@_from_model("ModelPackagingJobStatus")
class PackagingJobStatus(StrEnum):
    CREATED = "CREATED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


@_from_model("ResourceType")
class ResourceType(StrEnum):
    """What a ConflictException or ResourceNotFoundException names in its ResourceType."""

    PROJECT = "PROJECT"
    DATASET = "DATASET"
    MODEL = "MODEL"
    TRIAL = "TRIAL"
    MODEL_PACKAGE_JOB = "MODEL_PACKAGE_JOB"


# Groups the services test for. A model is busy while it changes hosting state by itself.
MODEL_IN_TRANSITION = (ModelStatus.TRAINING, ModelStatus.STARTING_HOSTING, ModelStatus.STOPPING_HOSTING,
                       ModelStatus.DELETING)
DATASET_JOB_RUNNING = (DatasetStatus.CREATE_IN_PROGRESS, DatasetStatus.UPDATE_IN_PROGRESS)
DATASET_BUSY = (*DATASET_JOB_RUNNING, DatasetStatus.UPDATE_FAILED_ROLLBACK_IN_PROGRESS,
                DatasetStatus.DELETE_IN_PROGRESS)
DATASET_TRAINABLE = (DatasetStatus.CREATE_COMPLETE, DatasetStatus.UPDATE_COMPLETE,
                     DatasetStatus.UPDATE_FAILED_ROLLBACK_COMPLETE)
PACKAGING_JOB_ACTIVE = (PackagingJobStatus.CREATED, PackagingJobStatus.RUNNING)
