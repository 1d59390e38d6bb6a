"""DetectAnomalies: check the image, run the hosted model on it, answer as the service did.

Every body is untrusted: the ContentType must name the format the bytes really have, the file must
decode completely within the limits of limits.md (a decompression bomb is refused from its header),
and it must have the training images' dimensions (inference-detect-anomalies.md). Anything else is
a ValidationException raised on the HTTP thread before the model is involved, so a bad request can
never take an inference thread down.
"""
from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from emulator.api.errors import ConflictException, ValidationException
from emulator.api.registry import OperationTable
from emulator.api.statuses import ModelStatus, ResourceType
from emulator.backend import Backend
from emulator.config import INFERENCE
from emulator.formats import png
from emulator.formats.image_files import FORMAT_OF_CONTENT_TYPE, ImageError, open_image, rgb_pixels, sniff_format
from emulator.services import hosting
from emulator.services.lookups import get_model
from emulator.services.model_lifecycle import conflict
from emulator.store.records import Model

if TYPE_CHECKING:
    import engine

operations = OperationTable()


def read_image(body: bytes, content_type: str, size: tuple[int, int]) -> np.ndarray:
    """The request's image as (H, W, 3) uint8 RGB, or a ValidationException that says what is wrong."""
    expected = FORMAT_OF_CONTENT_TYPE.get(content_type.split(";", 1)[0].strip().lower())
    if expected is None:
        raise ValidationException(
            f"ContentType {content_type} is not supported; use {' or '.join(FORMAT_OF_CONTENT_TYPE)}.")
    found = sniff_format(body)
    if found != expected:
        actual = f"a {found} image" if found else "not a PNG or JPEG image"
        raise ValidationException(f"ContentType is {content_type} but the request body is {actual}.")
    try:
        image = open_image(body, "The image", (expected,))
        if image.size != size:
            width, height = size
            raise ValidationException(
                f"The image is {image.width}x{image.height} pixels but the model was trained on {width}x{height} "
                "images; DetectAnomalies needs an image with the training images' dimensions.")
        return rgb_pixels(image, body, "The image")
    except ImageError as exc:
        raise ValidationException(str(exc)) from None


def mask_png(prediction: engine.Prediction) -> bytes:
    """The prediction's anomaly mask as a PNG (a blank one, the common case, is encoded once per size)."""
    mask = prediction.mask
    if mask is None:
        raise ValueError("a classification model's prediction has no mask")
    height, width = mask.shape[:2]
    if len(prediction.anomalies) == 1:  # the background alone: an all-white mask
        return _blank_png(width, height)
    return png.encode_rgb(mask)


@functools.lru_cache(maxsize=16)
def _blank_png(width: int, height: int) -> bytes:
    return png.encode_rgb(np.full((height, width, 3), 255, dtype=np.uint8))


def _refusal(row: Model, why: str) -> ConflictException:
    return ConflictException(f"Model version {row.version} of project {row.project} {why}",
                             resource_id=str(row.version), resource_type=ResourceType.MODEL)


def _stopped(row: Model) -> ConflictException:
    """A StopModel finished between reading the model's status and running the request."""
    return _refusal(row, "is no longer hosted; start it with StartModel.")


def _served_here(backend: Backend, row: Model) -> hosting.HostedModel:
    """The copy of a HOSTED model this node serves. A node still loading it (the model is served
    elsewhere, or this node just started or joined) is waited for, up to hosting.LOAD_WAIT_SECONDS; a
    node that has not begun loading it reconciles now rather than at its next poll."""
    if INFERENCE not in backend.settings.roles:  # e.g. a console trial on a worker-only node
        roles = ",".join(backend.settings.roles)
        raise _refusal(row, f"can't be served by this node (roles: {roles}); DetectAnomalies needs a node "
                            "with the inference role.")
    key = (row.project, row.version)
    hosts = hosting.registry(backend)
    deadline = time.monotonic() + hosting.LOAD_WAIT_SECONDS
    load = hosts.load_of(key)
    if load is None:
        hosting.reconciler(backend).reconcile_now(hosting.LOAD_WAIT_SECONDS)
        load = hosts.load_of(key)
    if load is None:  # a StopModel won the race with this request
        raise _stopped(row)
    try:
        return load.future.result(timeout=max(0.0, deadline - time.monotonic()))
    except hosting.LoadTimeout:
        raise _refusal(row, f"is still loading on this node after {hosting.LOAD_WAIT_SECONDS:.0f} s; try again "
                            "in a few seconds.") from None
    except Exception as error:  # noqa: BLE001 - the load's failure, logged by the reconciler
        raise _refusal(row, f"could not be loaded on this node ({hosting.client_reason(backend, error)}); "
                            "other nodes may serve it.") from None


@operations.operation("DetectAnomalies")
def detect_anomalies(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    return detect(backend, params)[0]


def detect(backend: Backend, params: dict[str, Any],
           served: hosting.HostedModel | None = None) -> tuple[dict[str, Any], engine.Prediction]:
    """DetectAnomalies' answer with the engine's prediction it came from (whose anomaly map the
    console's trial detections show as a heatmap, for every model). `served` is a copy of the model
    the caller loaded itself (a console trial on a node without the inference role); None: this
    node's hosted copy."""
    row = get_model(backend, params["ProjectName"], params["ModelVersion"])
    if row.status != ModelStatus.HOSTED:
        raise conflict(row, "detect anomalies with")
    hosted = _served_here(backend, row) if served is None else served
    image = read_image(params["Body"], params["ContentType"], hosted.image_size)
    try:
        prediction = hosted.predict(image)
    except hosting.NotHosted:
        raise _stopped(row) from None
    result: dict[str, Any] = {
        "Source": {"Type": "direct"},
        "IsAnomalous": prediction.is_anomalous,
        "Confidence": prediction.confidence,
    }
    if hosted.is_segmentation:
        result["Anomalies"] = [{"Name": name, "PixelAnomaly": {"TotalPercentageArea": area, "Color": colour}}
                               for name, colour, area in prediction.anomalies]
        result["AnomalyMask"] = mask_png(prediction)
    return {"DetectAnomalyResult": result}, prediction
