"""Model packaging jobs: StartModelPackagingJob, DescribeModelPackagingJob, ListModelPackagingJobs.

The cloud compiled a model into an AWS IoT Greengrass component (package-job-sdk.md). Here the job's
output is the model itself, in the package format of docs/model-package.md (emulator/edge/package.py)
that ``lookout-emulator edge-agent`` serves: under the job's S3OutputLocation it writes

    <prefix>/<ComponentName>/<ComponentVersion>/model.tar.gz        the engine artifact as ``engine/``
                                                                    and ``lookout-model.json``
    <prefix>/<ComponentName>/<ComponentVersion>/lookout-model.json  the manifest

Jobs go CREATED -> RUNNING -> SUCCEEDED | FAILED in the background.
"""
from __future__ import annotations

import json
import logging
import uuid
from typing import Any, cast

from emulator.api.errors import ConflictException, ResourceNotFoundException, ValidationException
from emulator.api.pagination import decode_token, invalid_token, page, page_size
from emulator.api.registry import OperationTable
from emulator.api.statuses import ModelStatus, PackagingJobStatus, ResourceType
from emulator.backend import Backend
from emulator.edge.package import ARCHIVE_NAME, MANIFEST_NAME, build_archive, new_manifest, seal
from emulator.jobs import PACKAGING, Outcome, handler
from emulator.s3.objects import ObjectNotFound
from emulator.services import artifacts
from emulator.services.lookups import get_model, get_project, model_arn
from emulator.services.model_lifecycle import conflict
from emulator.store.records import PackagingJob

operations = OperationTable()

log = logging.getLogger(__name__)

CREATED, RUNNING, SUCCEEDED, FAILED = (PackagingJobStatus.CREATED, PackagingJobStatus.RUNNING,
                                      PackagingJobStatus.SUCCEEDED, PackagingJobStatus.FAILED)
METHOD = "Greengrass"
NVIDIA_OPTIONS = ("gpu-code", "trt-ver", "cuda-ver")


def _greengrass(configuration: dict[str, Any]) -> dict[str, Any]:
    return cast(dict[str, Any], configuration["Greengrass"])


def component_version(configuration: dict[str, Any], model_version: int) -> str:
    """The ComponentVersion given, or the documented default "<model version>.0.0"."""
    return _greengrass(configuration).get("ComponentVersion") or f"{model_version}.0.0"


def check_target(greengrass: dict[str, Any]) -> None:
    """The target rules of package-settings.md and the GreengrassConfiguration reference."""
    device, platform = greengrass.get("TargetDevice"), greengrass.get("TargetPlatform")
    options = greengrass.get("CompilerOptions")
    if (device is None) == (platform is None):
        raise ValidationException("Specify exactly one of TargetDevice and TargetPlatform in the Greengrass "
                                  "configuration.")
    if device is not None:
        if options is not None:
            raise ValidationException("CompilerOptions can't be used with TargetDevice; remove them (the target "
                                      "device determines the compiler options).")
        return
    platform = greengrass["TargetPlatform"]
    parsed: Any = {}
    if options is not None:
        try:
            parsed = json.loads(options)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise ValidationException(f"CompilerOptions must be a JSON object, such as "
                                      f'{{"mcpu": "core-avx2"}}; got {options}.')
    if platform.get("Accelerator") == "NVIDIA":
        missing = [name for name in NVIDIA_OPTIONS if name not in parsed]
        if missing:
            raise ValidationException(
                "A TargetPlatform with the NVIDIA accelerator needs the compiler options gpu-code, trt-ver and "
                f"cuda-ver; missing: {', '.join(missing)}.")


def _component_arn(backend: Backend, name: str, version: str) -> str:
    settings = backend.settings
    return f"arn:aws:greengrass:{settings.region}:{settings.account_id}:components:{name}:versions:{version}"


@operations.operation("StartModelPackagingJob")
def start_model_packaging_job(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    project = params["ProjectName"]
    configuration = params["Configuration"]
    greengrass = _greengrass(configuration)
    check_target(greengrass)
    job_name = params.get("JobName") or str(uuid.uuid4())
    now = backend.now()
    with backend.store.transaction():
        model = get_model(backend, project, params["ModelVersion"])
        if model.status == ModelStatus.TRAINING:
            raise conflict(model, "package")
        if model.status == ModelStatus.TRAINING_FAILED:
            raise ValidationException(f"Model version {model.version} of project {project} failed to train; "
                                      "only a trained model can be packaged.")
        name, version = greengrass["ComponentName"], component_version(configuration, model.version)
        for other in backend.store.packaging_jobs.all_in((CREATED, RUNNING, SUCCEEDED)):
            if (_greengrass(other.configuration)["ComponentName"] == name
                    and component_version(other.configuration, other.model_version) == version
                    and (other.project, other.job_name) != (project, job_name)):
                raise ConflictException(
                    f"The component {name} version {version} already exists (model packaging job "
                    f"{other.job_name} of project {other.project}); choose another ComponentName or "
                    "ComponentVersion.", resource_id=job_name, resource_type=ResourceType.MODEL_PACKAGE_JOB)
        if not backend.store.packaging_jobs.add(project, job_name, model.version, CREATED,
                                                "The model packaging job was created.", params.get("Description"),
                                                configuration, now):
            raise ConflictException(f"A model packaging job named {job_name} already exists in project {project}.",
                                    resource_id=job_name, resource_type=ResourceType.MODEL_PACKAGE_JOB)
    _submit(backend, project, job_name)
    return {"JobName": job_name}


def _get_job(backend: Backend, project: str, job_name: str) -> PackagingJob:
    get_project(backend, project)
    row = backend.store.packaging_jobs.get(project, job_name)
    if row is None:
        raise ResourceNotFoundException(f"The model packaging job {job_name} does not exist in project {project}.",
                                        resource_id=job_name, resource_type=ResourceType.MODEL_PACKAGE_JOB)
    return row


def _metadata(job: PackagingJob) -> dict[str, Any]:
    return {
        "JobName": job.job_name,
        "ProjectName": job.project,
        "ModelVersion": str(job.model_version),
        "ModelPackagingJobDescription": job.description,
        "ModelPackagingMethod": METHOD,
        "Status": job.status,
        "StatusMessage": job.status_message,
        "CreationTimestamp": job.created_at,
        "LastUpdatedTimestamp": job.updated_at,
    }


@operations.operation("DescribeModelPackagingJob")
def describe_model_packaging_job(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    row = _get_job(backend, params["ProjectName"], params["JobName"])
    description = _metadata(row)
    description["ModelPackagingConfiguration"] = row.configuration
    if row.output_details:
        description["ModelPackagingOutputDetails"] = row.output_details
    return {"ModelPackagingDescription": description}


@operations.operation("ListModelPackagingJobs")
def list_model_packaging_jobs(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    project = params["ProjectName"]
    get_project(backend, project)
    created, name = _position(params.get("NextToken"))
    size = page_size(params.get("MaxResults"))
    rows = backend.store.packaging_jobs.page(project, created, name, size + 1)
    shown, token = page(rows, size, lambda row: [row.created_at, row.job_name])
    return {"ModelPackagingJobs": [_metadata(row) for row in shown], "NextToken": token}


def _position(token: str | None) -> tuple[float, str]:
    """(creation time, job name) of the last job of the previous page; the start without a token."""
    if token is None:
        return 0.0, ""
    position = decode_token(token, expected=list)
    if len(position) != 2 or not isinstance(position[0], (int, float)) or not isinstance(position[1], str):
        raise invalid_token(token)
    return float(position[0]), position[1]


# ------------------------------------------------------------------------------------------- the job
def _submit(backend: Backend, project: str, job_name: str, resumed: bool = False) -> None:
    backend.jobs.submit(PACKAGING, f"{project}/{job_name}", run_packaging, backend, project, job_name, resumed=resumed)


def _set_status(backend: Backend, project: str, job_name: str, status: str, message: str,
                output_details: dict[str, Any] | None = None) -> None:
    """Move the job on from where its run leaves it: CREATED (or RUNNING, when a restart runs it
    again) to RUNNING, then RUNNING to the outcome."""
    expected = (CREATED, RUNNING) if status == RUNNING else (RUNNING,)
    backend.store.packaging_jobs.transition(project, job_name, expected, status, message, backend.now(),
                                            output_details)


@handler
def run_packaging(backend: Backend, project: str, job_name: str) -> Outcome:
    """Package the model and record the outcome; never raises (the outcome is the job's status)."""
    import engine

    row = backend.store.packaging_jobs.get(project, job_name)
    if row is None or row.status not in (CREATED, RUNNING):  # its project was deleted, or a second run
        return Outcome.SKIPPED
    configuration = row.configuration
    greengrass = _greengrass(configuration)
    name, version = greengrass["ComponentName"], component_version(configuration, row.model_version)
    _set_status(backend, project, job_name, RUNNING, "The model is being packaged.")
    location = greengrass["S3OutputLocation"]
    folder = _package_folder(location.get("Prefix") or "", name, version)
    try:
        directory = artifacts.local_engine(backend, project, row.model_version)
        model = engine.load_model(directory, device="cpu")  # also proves the packaged artifact loads
        manifest = new_manifest(
            component_name=name, component_version=version,
            model_arn=model_arn(backend, project, row.model_version),
            model_type="segmentation" if model.is_segmentation else "classification",
            image_size=model.image_size, label_colors=model.label_colors,
            ComponentDescription=greengrass.get("ComponentDescription"),
            ProjectName=project,
            ModelVersion=str(row.model_version),
            Target={key: greengrass[key] for key in ("TargetDevice", "TargetPlatform", "CompilerOptions")
                    if key in greengrass},
        )
        archive = build_archive(directory, manifest)
        manifest = seal(manifest, archive, folder + ARCHIVE_NAME)
        backend.objects.put(location["Bucket"], folder + ARCHIVE_NAME, archive, "application/gzip")
        backend.objects.put(location["Bucket"], folder + MANIFEST_NAME, json.dumps(manifest, indent=2).encode(),
                            "application/json")
    except ObjectNotFound as exc:
        _set_status(backend, project, job_name, FAILED,
                    f"The package could not be written to s3://{location['Bucket']}/{folder} ({exc}).")
        return Outcome.FAILED
    except (engine.EngineError, artifacts.ArtifactError) as exc:
        _set_status(backend, project, job_name, FAILED, f"The model could not be packaged: {exc}")
        return Outcome.FAILED
    except OSError as exc:  # e.g. a full disk; the path stays in the operator's log
        log.warning("packaging job %s/%s failed", project, job_name, exc_info=True)
        _set_status(backend, project, job_name, FAILED,
                    f"The model could not be packaged: the data directory could not be read or written "
                    f"({exc.strerror or type(exc).__name__}).")
        return Outcome.FAILED
    except Exception as exc:  # a bug of ours: keep the traceback, tell the user
        log.exception("packaging job %s/%s failed", project, job_name)
        _set_status(backend, project, job_name, FAILED, f"An internal error stopped the job ({type(exc).__name__}).")
        return Outcome.FAILED
    _set_status(backend, project, job_name, SUCCEEDED,
                f"The model was packaged to s3://{location['Bucket']}/{folder}{ARCHIVE_NAME}.",
                {"Greengrass": {"ComponentVersionArn": _component_arn(backend, name, version),
                                "ComponentName": name, "ComponentVersion": version}})
    return Outcome.SUCCEEDED


def _package_folder(prefix: str, name: str, version: str) -> str:
    """Where a package goes under the S3OutputLocation prefix. The layout is the emulator's own (the
    service made a Greengrass component instead), and its prefix is taken as a folder."""
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return f"{prefix}{name}/{version}/"


def resume_packaging(backend: Backend) -> None:
    """Jobs a restart interrupted run again from the start (packaging is repeatable)."""
    for row in backend.store.packaging_jobs.all_in((CREATED, RUNNING)):
        _submit(backend, row.project, row.job_name, resumed=True)
