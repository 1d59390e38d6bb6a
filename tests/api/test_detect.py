"""StartModel / StopModel / DetectAnomalies: hosting life cycle, results and every rejected input."""
from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError
from PIL import Image

from emulator.services.hosting import registry
from emulator.store import schema
from tests.api.datasets_support import error_of
from tests.api.models_support import COLOUR, LABEL, SIZE, Trained, encode, new_kit, texture, trained


def served_model(backend: Any, key: tuple[str, int]) -> Any:
    """The model this node serves for ``key``, once its load has ended; fails the test if it holds none."""
    load = registry(backend).load_of(key)
    assert load is not None, f"this node holds no load of {key}"
    return load.future.result(timeout=60)


@pytest.fixture(scope="module")
def hosted(lookout: Any, s3: Any) -> Iterator[Trained]:
    """The shared classification model, hosted with two inference units for this module."""
    model = trained("classification", lookout, s3)
    described = model.kit.host("1", units=2)
    assert (described["MinInferenceUnits"], described["MaxInferenceUnits"]) == (2, 2)
    yield model
    model.kit.lookout.stop_model(ProjectName=model.kit.project, ModelVersion="1")
    assert model.kit.wait_model("1")["Status"] == "TRAINED"


def _detect_error(model: Trained, body: bytes, content_type: str = "image/png") -> tuple[str, int, str]:
    with pytest.raises(ClientError) as err:
        model.kit.detect("1", body, content_type)
    return error_of(err)


# ------------------------------------------------------------------------------------------ results
def test_classification_results(hosted: Trained) -> None:
    for body in hosted.normals:
        result = hosted.kit.detect("1", body)
        assert result["Source"] == {"Type": "direct"}
        assert result["IsAnomalous"] is False
        assert 0.5 <= result["Confidence"] <= 1.0
        assert "Anomalies" not in result and "AnomalyMask" not in result
    for body, _ in hosted.anomalies:
        result = hosted.kit.detect("1", body)
        assert result["IsAnomalous"] is True and 0.5 <= result["Confidence"] <= 1.0


def test_jpeg_images_are_accepted(hosted: Trained) -> None:
    result = hosted.kit.detect("1", encode(texture(8000), "JPEG"), "image/jpeg")
    assert result["Source"] == {"Type": "direct"} and isinstance(result["IsAnomalous"], bool)


def test_latest_version_is_resolved(hosted: Trained) -> None:
    assert hosted.kit.detect("latest", hosted.normals[0])["IsAnomalous"] is False


def test_segmentation_life_cycle(lookout: Any, s3: Any, emulator: Any) -> None:
    """Not hosted -> Conflict; hosted -> mask and labels; stopped -> TRAINED and Conflict again."""
    model = trained("segmentation", lookout, s3)
    kit = model.kit
    with pytest.raises(ClientError) as err:
        kit.detect("1", model.normals[0])
    code, status, message = error_of(err)
    assert (code, status) == ("ConflictException", 409)
    assert err.value.response["ResourceType"] == "MODEL" and "TRAINED" in message

    described = kit.host("1", MaxInferenceUnits=3)
    assert (described["MinInferenceUnits"], described["MaxInferenceUnits"]) == (1, 3)
    served = served_model(emulator.backend, (kit.project, 1))
    assert served.units == 3  # workers start on demand up to the maximum
    body, truth = model.anomalies[0]
    result = kit.detect("1", body)
    assert result["IsAnomalous"] is True
    names = [anomaly["Name"] for anomaly in result["Anomalies"]]
    assert names[0] == "background" and result["Anomalies"][0]["PixelAnomaly"]["Color"] == "#FFFFFF"
    found = result["Anomalies"][names.index(LABEL)]["PixelAnomaly"]
    assert found["Color"].upper() == COLOUR
    assert sum(a["PixelAnomaly"]["TotalPercentageArea"] for a in result["Anomalies"]) == pytest.approx(1.0, abs=1e-3)
    mask = np.asarray(Image.open(io.BytesIO(result["AnomalyMask"])).convert("RGB"))
    assert mask.shape == (SIZE[1], SIZE[0], 3)
    painted = np.all(mask == (0x2C, 0xA0, 0x2C), axis=-1)
    square = np.all(truth == (0x2C, 0xA0, 0x2C), axis=-1)
    assert painted.mean() == pytest.approx(found["TotalPercentageArea"], abs=1e-3)
    assert (painted & square).sum() / square.sum() > 0.5  # the mask lands on the defect
    normal = kit.detect("1", model.normals[0])
    assert normal["IsAnomalous"] is False and [a["Name"] for a in normal["Anomalies"]] == ["background"]
    blank = np.asarray(Image.open(io.BytesIO(normal["AnomalyMask"])).convert("RGB"))
    assert blank.shape == (SIZE[1], SIZE[0], 3) and (blank == 255).all()

    assert lookout.stop_model(ProjectName=kit.project, ModelVersion="1")["Status"] == "STOPPING_HOSTING"
    described = kit.wait_model("1")
    assert described["Status"] == "TRAINED" and "MinInferenceUnits" not in described
    for call in (lambda: lookout.stop_model(ProjectName=kit.project, ModelVersion="1"),
                 lambda: kit.detect("1", model.normals[0])):
        with pytest.raises(ClientError) as err:
            call()
        assert error_of(err)[0] == "ConflictException"


def test_concurrent_requests_each_get_their_own_result(hosted: Trained, emulator: Any) -> None:
    """With 2 units, requests that arrive together are predicted together; each answer must still be
    the one its own image gets alone."""
    served = served_model(emulator.backend, (hosted.kit.project, 1))
    assert served.units == 2
    bodies = hosted.normals[:3] + [body for body, _ in hosted.anomalies[:3]]
    alone = [hosted.kit.detect("1", body) for body in bodies]
    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(lambda i: hosted.kit.detect("1", bodies[i % 6]), range(24)))
    for i, result in enumerate(together):
        assert result["IsAnomalous"] is alone[i % 6]["IsAnomalous"]
        assert result["Confidence"] == pytest.approx(alone[i % 6]["Confidence"], abs=1e-5)


# ------------------------------------------------------------------------------------ rejected images
def test_unsupported_content_type(hosted: Trained) -> None:
    code, status, message = _detect_error(hosted, hosted.normals[0], "image/gif")
    assert (code, status) == ("ValidationException", 400) and "image/png or image/jpeg" in message


def test_content_type_must_match_the_bytes(hosted: Trained) -> None:
    code, _, message = _detect_error(hosted, hosted.normals[0], "image/jpeg")
    assert code == "ValidationException" and "a PNG image" in message


def test_non_image_body(hosted: Trained) -> None:
    code, _, message = _detect_error(hosted, b"GIF89a not an image at all")
    assert code == "ValidationException" and "not a PNG or JPEG image" in message


def test_truncated_image(hosted: Trained) -> None:
    body = encode(texture(1), "JPEG")
    code, _, message = _detect_error(hosted, body[: len(body) // 2], "image/jpeg")
    assert code == "ValidationException" and "truncated" in message


def test_image_of_other_dimensions(hosted: Trained) -> None:
    code, _, message = _detect_error(hosted, encode(texture(1, (128, 96))))
    assert code == "ValidationException"
    assert "128x96" in message and f"{SIZE[0]}x{SIZE[1]}" in message


def _png_bomb(width: int, height: int) -> bytes:
    """A small PNG whose header declares a huge image: it must be refused before any pixel is decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 100_000, 9))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("side, expected", [(30_000, "more pixels than"), (4_000, "4000x4000")])
def test_decompression_bomb(hosted: Trained, side: int, expected: str) -> None:
    code, _, message = _detect_error(hosted, _png_bomb(side, side))
    assert code == "ValidationException" and expected in message


def test_oversize_body(hosted: Trained) -> None:
    body = encode(texture(3), "JPEG") + b"\x00" * (8 * 1024 * 1024)  # decoders ignore bytes after the image
    code, _, message = _detect_error(hosted, body, "image/jpeg")
    assert code == "ValidationException" and "8 MB" in message


def test_bad_requests_never_break_the_workers(hosted: Trained) -> None:
    for body in (b"", b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, encode(texture(2))[:-30]):
        with pytest.raises(ClientError) as err:
            hosted.kit.detect("1", body)
        assert error_of(err)[0] == "ValidationException"
    assert hosted.kit.detect("1", hosted.normals[1])["IsAnomalous"] is False


# --------------------------------------------------------------------------- hosting state errors
def test_detect_on_an_unknown_model(hosted: Trained, lookout: Any) -> None:
    with pytest.raises(ClientError) as err:
        lookout.detect_anomalies(ProjectName=hosted.kit.project, ModelVersion="99", Body=hosted.normals[0],
                                 ContentType="image/png")
    assert error_of(err)[:2] == ("ResourceNotFoundException", 404)


def test_a_hosted_model_cannot_be_started_again_or_deleted(hosted: Trained, lookout: Any) -> None:
    for call, kwargs in (("start_model", {"MinInferenceUnits": 1}), ("delete_model", {})):
        with pytest.raises(ClientError) as err:
            getattr(lookout, call)(ProjectName=hosted.kit.project, ModelVersion="1", **kwargs)
        code, _, message = error_of(err)
        assert code == "ConflictException" and "HOSTED" in message


def test_max_inference_units_below_min(hosted: Trained, lookout: Any) -> None:
    with pytest.raises(ClientError) as err:
        lookout.start_model(ProjectName=hosted.kit.project, ModelVersion="1", MinInferenceUnits=3,
                            MaxInferenceUnits=2)
    code, _, message = error_of(err)
    assert code == "ValidationException" and "MaxInferenceUnits" in message


def test_inference_units_are_validated_server_side(hosted: Trained, lookout_unvalidated: Any) -> None:
    with pytest.raises(ClientError) as err:
        lookout_unvalidated.start_model(ProjectName=hosted.kit.project, ModelVersion="1", MinInferenceUnits=0)
    code, _, message = error_of(err)
    assert code == "ValidationException" and "minInferenceUnits" in message


def test_only_trained_models_start_and_only_hosted_ones_stop(lookout: Any, s3: Any, project_name: str) -> None:
    version = new_kit(lookout, s3, project_name).failed_model()
    for call, kwargs in (("start_model", {"MinInferenceUnits": 1}), ("stop_model", {})):
        with pytest.raises(ClientError) as err:
            getattr(lookout, call)(ProjectName=project_name, ModelVersion=version, **kwargs)
        code, status, message = error_of(err)
        assert (code, status) == ("ConflictException", 409) and "TRAINING_FAILED" in message


def test_a_model_that_cannot_be_loaded_fails_hosting(lookout: Any, s3: Any, project_name: str, emulator: Any) -> None:
    kit = new_kit(lookout, s3, project_name)
    version = kit.failed_model()
    with emulator.backend.store.transaction() as db:  # arranged: a TRAINED row whose artifact is missing
        db.execute(schema.models.update().where(schema.models.c.project == project_name).values(status="TRAINED"))
    lookout.start_model(ProjectName=project_name, ModelVersion=version, MinInferenceUnits=1)
    described = kit.wait_model(version)
    assert described["Status"] == "HOSTING_FAILED"
    assert "could not be loaded" in described["StatusMessage"]
    assert f"models/{project_name}/{version}/engine" in described["StatusMessage"]  # relative to the data dir
    assert str(emulator.backend.settings.data_dir) not in described["StatusMessage"]  # not the server's path
    with pytest.raises(ClientError) as err:
        kit.detect(version, encode(texture(1, (64, 64))))
    assert error_of(err)[0] == "ConflictException"
    assert lookout.stop_model(ProjectName=project_name, ModelVersion=version)["Status"] == "STOPPING_HOSTING"
    assert kit.wait_model(version)["Status"] == "TRAINED"
    lookout.delete_model(ProjectName=project_name, ModelVersion=version)


def test_a_hosted_model_this_node_does_not_hold_is_loaded_for_the_request(hosted: Trained, emulator: Any) -> None:
    """A node that lacks a HOSTED model (it joined the fleet, or lost its copy) loads it for the request
    and answers, instead of refusing it."""
    hosts = registry(emulator.backend)
    key = (hosted.kit.project, 1)
    hosts.stop(key)
    assert hosted.kit.detect("1", hosted.normals[0])["IsAnomalous"] is False
    assert served_model(emulator.backend, key).units == 2


def test_a_request_racing_stop_model_finds_the_model_stopped(hosted: Trained, emulator: Any) -> None:
    """What DetectAnomalies meets when StopModel completes between its status check and inference."""
    from emulator.services.hosting import HostingRegistry, NotHosted
    from emulator.services.lookups import engine_dir

    own = HostingRegistry()
    key = (hosted.kit.project, 1)
    served = own.host(key, lambda: engine_dir(emulator.backend, *key), 1).result()
    load = own.load_of(key)
    assert load is not None and load.future.result() is served
    own.stop(key)
    assert own.load_of(key) is None
    with pytest.raises(NotHosted):
        served.predict(texture(1))


def test_stopping_a_model_still_loading_does_not_wait_for_its_load(hosted: Trained, emulator: Any) -> None:
    """A stop returns at once while the model is still loading (a reconciler calls it, and must keep
    beating its heartbeat), and the model is closed as soon as its load ends: nothing stays loaded."""
    import threading
    import time

    from emulator.services.hosting import HostingRegistry, NotHosted
    from emulator.services.lookups import engine_dir

    own = HostingRegistry()
    key = (hosted.kit.project, 1)
    release = threading.Event()

    def locate() -> Any:
        release.wait(20)  # a slow artifact fetch
        return engine_dir(emulator.backend, *key)

    loading = own.host(key, locate, 1)
    own.stop(key)
    assert not loading.done(), "stop waited for the load in progress"
    assert own.load_of(key) is None
    release.set()
    served = loading.result(timeout=60)
    deadline = time.monotonic() + 10
    while True:  # closed by the load's completion callback, just after the future's result is set
        try:
            served.predict(texture(1))
        except NotHosted:
            break
        assert time.monotonic() < deadline, "the stopped model was left loaded"
        time.sleep(0.05)
