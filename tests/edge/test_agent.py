"""The five Edge Agent RPCs against `lookout-emulator edge-agent`, with the package's generated stubs:
states, results, masks, bytes and shared memory, and every documented error code."""
from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import shared_memory
from typing import Any

import grpc
import numpy as np
import pytest

from emulator.edge import edge_agent_pb2 as pb2
from tests.api.models_support import COLOUR, LABEL, SIZE, Trained, texture
from tests.edge.edge_support import (
    AgentProcess,
    bitmap,
    describe,
    detect,
    model_arn,
    painted,
    pixels,
    rpc_error,
    running,
    stub,
    wait_status,
)

WIDTH, HEIGHT = SIZE
NBYTES = WIDTH * HEIGHT * 3


@pytest.fixture(scope="module")
def client(agent: AgentProcess) -> Any:
    return stub(agent.target)


@pytest.fixture
def segment() -> Iterator[shared_memory.SharedMemory]:
    """A shared memory segment for two bitmaps (at unaligned offsets), unlinked after the test."""
    memory = shared_memory.SharedMemory(create=True, size=2 * NBYTES + 4096)
    yield memory
    memory.close()
    memory.unlink()


# ---------------------------------------------------------------------------------------- listing
def test_components_are_listed_with_the_packaged_models(client: Any, models: dict[str, Trained]) -> None:
    listed = {model.model_component: model for model in client.ListModels(pb2.ListModelsRequest()).models}
    assert sorted(listed) == ["classifier", "segmenter"]
    assert listed["classifier"].lookout_vision_model_arn == model_arn(models["classification"])
    # "segmenter" holds 2.0.0 (the classification model) and 10.0.0 (the segmentation model): 10.0.0 wins.
    assert listed["segmenter"].lookout_vision_model_arn == model_arn(models["segmentation"])
    described = describe(client, "segmenter")
    assert described.model_component == "segmenter"
    assert described.lookout_vision_model_arn == model_arn(models["segmentation"])
    assert described.status in (pb2.STOPPED, pb2.RUNNING) and described.status_message


# ------------------------------------------------------------------------------------- life cycle
def test_start_and_stop_follow_the_documented_states(client: Any, models: dict[str, Trained]) -> None:
    name = "classifier"
    if describe(client, name).status == pb2.RUNNING:
        client.StopModel(pb2.StopModelRequest(model_component=name))
    assert describe(client, name).status == pb2.STOPPED
    image = pixels(models["classification"].normals[0])
    assert rpc_error(lambda: detect(client, name, image))[0] == grpc.StatusCode.FAILED_PRECONDITION
    code, message = rpc_error(lambda: client.StopModel(pb2.StopModelRequest(model_component=name)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "STOPPED" in message

    assert client.StartModel(pb2.StartModelRequest(model_component=name)).status == pb2.STARTING  # asynchronous
    code, message = rpc_error(lambda: client.StartModel(pb2.StartModelRequest(model_component=name)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "STARTING" in message
    code, message = rpc_error(lambda: detect(client, name, image))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "STARTING" in message
    described = wait_status(client, name)
    assert described.status == pb2.RUNNING, described.status_message
    assert "version 1.0.0" in described.status_message and "cpu" in described.status_message
    assert detect(client, name, image).is_anomalous is False
    code, message = rpc_error(lambda: client.StartModel(pb2.StartModelRequest(model_component=name)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "RUNNING" in message

    assert client.StopModel(pb2.StopModelRequest(model_component=name)).status == pb2.STOPPED  # synchronous
    assert describe(client, name).status == pb2.STOPPED
    code, message = rpc_error(lambda: detect(client, name, image))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "StartModel" in message
    running(client, name)  # and it starts again
    assert detect(client, name, image).is_anomalous is False


def test_stop_lets_queued_requests_finish(client: Any, models: dict[str, Trained]) -> None:
    """Requests in flight when StopModel comes are answered or refused as not RUNNING, none lost."""
    running(client, "classifier")
    request = pb2.DetectAnomaliesRequest(model_component="classifier",
                                         bitmap=bitmap(pixels(models["classification"].normals[0])))
    futures = [client.DetectAnomalies.future(request) for _ in range(6)]
    assert client.StopModel(pb2.StopModelRequest(model_component="classifier")).status == pb2.STOPPED
    errors = [future.exception(timeout=60) for future in futures]
    assert {error.code() for error in errors if error is not None} <= {grpc.StatusCode.FAILED_PRECONDITION}
    assert all(future.result().detect_anomaly_result.is_anomalous is False
               for future, error in zip(futures, errors, strict=True) if error is None)
    assert describe(client, "classifier").status == pb2.STOPPED


def test_two_components_run_at_once(client: Any, models: dict[str, Trained]) -> None:
    running(client, "classifier")
    running(client, "segmenter")
    statuses = {model.model_component: model.status for model in client.ListModels(pb2.ListModelsRequest()).models}
    assert statuses == {"classifier": pb2.RUNNING, "segmenter": pb2.RUNNING}
    jobs = [("classifier", png, False) for png in models["classification"].normals] + \
           [("classifier", png, True) for png, _ in models["classification"].anomalies] + \
           [("segmenter", png, False) for png in models["segmentation"].normals] + \
           [("segmenter", png, True) for png, _ in models["segmentation"].anomalies]
    with ThreadPoolExecutor(max_workers=6) as pool:  # both models busy at the same time
        results = list(pool.map(lambda job: detect(client, job[0], pixels(job[1])), jobs * 2))
    assert [result.is_anomalous for result in results] == [expected for _, _, expected in jobs * 2]
    masks = [result.HasField("anomaly_mask") for result in results]
    assert masks == [name == "segmenter" for name, _, _ in jobs * 2]


# ---------------------------------------------------------------------------------------- results
def test_classification_results(client: Any, models: dict[str, Trained]) -> None:
    model = models["classification"]
    running(client, "classifier")
    cases = [(pixels(png), False) for png in model.normals] + [(pixels(png), True) for png, _ in model.anomalies]
    for image, expected in cases:
        result = detect(client, "classifier", image)
        assert result.is_anomalous is expected
        assert result.anomaly_threshold == 0.5
        assert (result.anomaly_score >= result.anomaly_threshold) is expected
        assert result.confidence == pytest.approx(result.anomaly_score if expected else 1 - result.anomaly_score)
        assert 0.5 <= result.confidence <= 1
        assert not result.HasField("anomaly_mask") and len(result.anomalies) == 0


def test_segmentation_mask_in_the_response(client: Any, models: dict[str, Trained]) -> None:
    model = models["segmentation"]
    running(client, "segmenter")
    for png, truth in model.anomalies:
        result = detect(client, "segmenter", pixels(png))
        assert result.is_anomalous is True
        mask_bitmap = result.anomaly_mask
        assert (mask_bitmap.width, mask_bitmap.height) == SIZE and mask_bitmap.WhichOneof("data") == "byte_data"
        mask = np.frombuffer(mask_bitmap.byte_data, dtype=np.uint8).reshape(HEIGHT, WIDTH, 3)
        colours = {tuple(int(v) for v in colour) for colour in np.unique(mask.reshape(-1, 3), axis=0)}
        assert colours == {(255, 255, 255), tuple(int(COLOUR[i:i + 2], 16) for i in (1, 3, 5))}
        found, expected = painted(mask), painted(truth)
        assert (found & expected).sum() / (found | expected).sum() > 0.3  # the mask covers the defect
        anomalies = [(a.name, a.pixel_anomaly.hex_color, a.pixel_anomaly.total_percentage_area)
                     for a in result.anomalies]
        assert [(name, colour) for name, colour, _ in anomalies] == [("background", "#FFFFFF"), (LABEL, COLOUR)]
        assert anomalies[1][2] == pytest.approx(found.mean(), abs=1e-6)
        assert sum(area for _, _, area in anomalies) == pytest.approx(1.0, abs=1e-5)
    normal = detect(client, "segmenter", pixels(model.normals[0]))
    assert normal.is_anomalous is False
    assert [a.name for a in normal.anomalies] == ["background"]
    assert not painted(np.frombuffer(normal.anomaly_mask.byte_data, np.uint8).reshape(HEIGHT, WIDTH, 3)).any()


@pytest.mark.parametrize("field", ["shared_memory_handle", "shared_memory_handle_v3"])
def test_shared_memory_in_and_mask_out(client: Any, models: dict[str, Trained], segment: Any, field: str) -> None:
    """Pixels read from the caller's shared memory, the mask written into it, through either field
    number of anomaly_mask_params' handle; the same result as with bytes in the message."""
    running(client, "segmenter")
    image = pixels(models["segmentation"].anomalies[0][0])
    image_at, mask_at = 17, 17 + NBYTES + 1000
    segment.buf[image_at:image_at + NBYTES] = image.tobytes()
    segment.buf[mask_at:mask_at + NBYTES] = bytes(NBYTES)
    handle = pb2.SharedMemoryHandle(name=segment.name, offset=image_at, size=NBYTES)
    mask_handle = pb2.SharedMemoryHandle(name="/" + segment.name, offset=mask_at, size=NBYTES)  # slash optional
    request = pb2.DetectAnomaliesRequest(
        model_component="segmenter", bitmap=pb2.Bitmap(width=WIDTH, height=HEIGHT, shared_memory_handle=handle),
        anomaly_mask_params=pb2.AnomalyMaskParams(**{field: mask_handle}))
    result = client.DetectAnomalies(request).detect_anomaly_result
    assert result.anomaly_mask.WhichOneof("data") == "shared_memory_handle"
    assert (result.anomaly_mask.width, result.anomaly_mask.height) == SIZE
    written = result.anomaly_mask.shared_memory_handle
    assert (written.offset, written.size) == (mask_at, NBYTES)
    mask = np.frombuffer(bytes(segment.buf[mask_at:mask_at + NBYTES]), np.uint8).reshape(HEIGHT, WIDTH, 3)
    in_message = detect(client, "segmenter", image)
    assert result.is_anomalous is in_message.is_anomalous is True
    assert result.confidence == pytest.approx(in_message.confidence)
    assert mask.tobytes() == in_message.anomaly_mask.byte_data
    assert painted(mask).any()
    assert bytes(segment.buf[image_at:image_at + NBYTES]) == image.tobytes()  # the input is left alone


def test_mask_parameters_are_ignored_for_classification(client: Any, models: dict[str, Trained],
                                                        segment: Any) -> None:
    running(client, "classifier")
    params = pb2.AnomalyMaskParams(shared_memory_handle=pb2.SharedMemoryHandle(name=segment.name, size=NBYTES))
    result = detect(client, "classifier", pixels(models["classification"].anomalies[0][0]), anomaly_mask_params=params)
    assert result.is_anomalous is True and not result.HasField("anomaly_mask")


# ----------------------------------------------------------------------------------------- errors
def _request(**bitmap: Any) -> Any:
    return pb2.DetectAnomaliesRequest(model_component="segmenter", bitmap=pb2.Bitmap(**bitmap))


INVALID_BITMAPS = {
    "short byte_data": (_request(width=WIDTH, height=HEIGHT, byte_data=bytes(100)), "has 100 bytes"),
    "RGBA": (_request(width=WIDTH, height=HEIGHT, byte_data=bytes(WIDTH * HEIGHT * 4)), "drop the alpha"),
    "a PNG file": (_request(width=WIDTH, height=HEIGHT, byte_data=b"\x89PNG\r\n" + bytes(30)), "not the file"),
    "too small": (_request(width=32, height=32, byte_data=bytes(32 * 32 * 3)), "from 64x64 to 4096x4096"),
    "too large": (_request(width=5000, height=64, byte_data=b""), "from 64x64 to 4096x4096"),
    "not the training size": (_request(width=128, height=96, byte_data=bytes(128 * 96 * 3)), "trained on 96x96"),
    "no pixels": (_request(width=WIDTH, height=HEIGHT), "set byte_data or shared_memory_handle"),
    "no bitmap": (pb2.DetectAnomaliesRequest(model_component="segmenter"), "no bitmap"),
    "unknown segment": (_request(width=WIDTH, height=HEIGHT, shared_memory_handle=pb2.SharedMemoryHandle(
        name="lookout-edge-test-no-such-segment", size=NBYTES)), "no shared memory object"),
    "segment name with a slash": (_request(width=WIDTH, height=HEIGHT, shared_memory_handle=pb2.SharedMemoryHandle(
        name="a/b", size=NBYTES)), "not a valid POSIX shared memory name"),
    "handle smaller than the bitmap": (_request(width=WIDTH, height=HEIGHT, shared_memory_handle=pb2.SharedMemoryHandle(
        name="anything", size=NBYTES - 1)), f"needs {NBYTES}"),
}


@pytest.mark.parametrize("case", sorted(INVALID_BITMAPS))
def test_invalid_bitmaps(client: Any, case: str) -> None:
    running(client, "segmenter")
    request, expected = INVALID_BITMAPS[case]
    code, message = rpc_error(lambda: client.DetectAnomalies(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and expected in message


def test_invalid_shared_memory_regions(client: Any, segment: Any) -> None:
    running(client, "segmenter")
    beyond = pb2.SharedMemoryHandle(name=segment.name, offset=segment.size - 10, size=NBYTES)
    code, message = rpc_error(lambda: client.DetectAnomalies(_request(width=WIDTH, height=HEIGHT,
                                                                      shared_memory_handle=beyond)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "does not fit" in message
    image = texture(1)
    for params, expected in [
        (pb2.AnomalyMaskParams(shared_memory_handle=pb2.SharedMemoryHandle(name=segment.name, size=NBYTES - 1)),
         f"needs {NBYTES}"),
        (pb2.AnomalyMaskParams(shared_memory_handle=beyond), "does not fit"),
        (pb2.AnomalyMaskParams(shared_memory_handle=pb2.SharedMemoryHandle(name=segment.name, size=NBYTES),
                               shared_memory_handle_v3=pb2.SharedMemoryHandle(name=segment.name, size=NBYTES,
                                                                              offset=NBYTES)), "set one"),
    ]:
        code, message = rpc_error(lambda params=params: detect(client, "segmenter", image, anomaly_mask_params=params))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and expected in message


def test_unknown_and_missing_component_names(client: Any) -> None:
    calls = {
        "DescribeModel": lambda name: client.DescribeModel(pb2.DescribeModelRequest(model_component=name)),
        "StartModel": lambda name: client.StartModel(pb2.StartModelRequest(model_component=name)),
        "StopModel": lambda name: client.StopModel(pb2.StopModelRequest(model_component=name)),
        "DetectAnomalies": lambda name: detect(client, name, texture(0)),
    }
    for rpc, call in calls.items():
        code, message = rpc_error(lambda call=call: call("no-such-component"))
        assert (code, "no model component no-such-component" in message) == (grpc.StatusCode.NOT_FOUND, True), rpc
        code, message = rpc_error(lambda call=call: call(""))
        assert (code, message) == (grpc.StatusCode.INVALID_ARGUMENT, "model_component is required."), rpc
        code, message = rpc_error(lambda call=call: call("x" * 100_000))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "is not a valid component name" in message, rpc
        assert len(message) < 300, rpc  # the name is not echoed whole
        code, message = rpc_error(lambda call=call: call("a/../b"))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "is not a valid component name" in message, rpc


def test_malformed_messages_are_invalid_argument(agent: AgentProcess) -> None:
    """Bytes that are no protobuf message: INVALID_ARGUMENT, and no traceback in the agent's log."""
    channel = grpc.insecure_channel(agent.target)
    before = agent.logs().count("Traceback")
    for rpc in ("DescribeModel", "StartModel", "StopModel", "ListModels", "DetectAnomalies"):
        raw = channel.unary_unary(f"/AWS.LookoutVision.EdgeAgent/{rpc}")  # bytes in, bytes out
        for junk in (b"\xff\xff\xff", b"\x0a\xff\x01ab"):  # a bad tag; a length past the end
            code, message = rpc_error(lambda raw=raw, junk=junk: raw(junk, timeout=10))
            assert code == grpc.StatusCode.INVALID_ARGUMENT and "is not a valid" in message, (rpc, junk)
    assert agent.logs().count("Traceback") == before
