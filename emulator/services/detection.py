"""DetectAnomalies: check the image, run the hosted model on it, answer as the service did.

Every body is untrusted: the ContentType must name the format the bytes really have, the file must
decode completely within the limits of limits.md (a decompression bomb is refused from its header),
and it must have the training images' dimensions (inference-detect-anomalies.md). Anything else is
a ValidationException raised on the HTTP thread before the model is involved, so a bad request can
never take an inference worker down.
"""
from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from emulator import hosting
from emulator.backend import Backend
from emulator.errors import ConflictException, ValidationException
from emulator.images import ImageError, decode_image, sniff_format
from emulator.operations import operation
from emulator.services.models import HOSTED, conflict, get_model

CONTENT_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG"}


def read_image(body: bytes, content_type: str, size: tuple[int, int]) -> np.ndarray:
    """The request's image as (H, W, 3) uint8 RGB, or a ValidationException that says what is wrong."""
    expected = CONTENT_TYPES.get(content_type.split(";", 1)[0].strip().lower())
    if expected is None:
        raise ValidationException(f"ContentType {content_type} is not supported; use image/png or image/jpeg.")
    found = sniff_format(body)
    if found != expected:
        actual = f"a {found} image" if found else "not a PNG or JPEG image"
        raise ValidationException(f"ContentType is {content_type} but the request body is {actual}.")
    width, height = size
    declared = _declared_size(body)
    if declared is not None and declared != size:
        raise ValidationException(
            f"The image is {declared[0]}x{declared[1]} pixels but the model was trained on {width}x{height} "
            "images; DetectAnomalies needs an image with the training images' dimensions.")
    try:
        image = decode_image(body, "The image", (expected,))
    except ImageError as exc:
        raise ValidationException(str(exc)) from None
    return np.asarray(image.convert("RGB"))


def _declared_size(body: bytes) -> tuple[int, int] | None:
    """The dimensions in the file header (no pixel is decoded); None if unreadable (decode_image says why)."""
    try:
        with Image.open(io.BytesIO(body)) as image:
            return image.size
    except (Image.DecompressionBombError, UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None


def encode_mask(mask: np.ndarray) -> bytes:
    """The anomaly mask as a PNG (fast compression: it is sent once and mostly one colour)."""
    buffer = io.BytesIO()
    Image.fromarray(mask, "RGB").save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _stopped(row: Any) -> ConflictException:
    """A StopModel finished between reading the model's status and running the request."""
    return ConflictException(f"Model version {row['version']} of project {row['project']} is no longer hosted; "
                             "start it with StartModel.", resource_id=str(row["version"]), resource_type="MODEL")


@operation("DetectAnomalies")
def detect_anomalies(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    row = get_model(backend, params["ProjectName"], params["ModelVersion"])
    if row["status"] != HOSTED:
        raise conflict(row, "detect anomalies with")
    hosted = hosting.registry(backend).get((row["project"], row["version"]))
    if hosted is None:
        raise _stopped(row)
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
        result["AnomalyMask"] = encode_mask(prediction.mask)
    return {"DetectAnomalyResult": result}
