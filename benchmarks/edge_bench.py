"""Reproduce the edge agent figures in BENCHMARKS.md (section "Edge agent").

    .venv/bin/python benchmarks/edge_bench.py [--json out.json] [--rounds 3]

On the shared cookies dataset (../shared/datasets/cookies, or --cookies / LOOKOUT_COOKIES_DIR), for a
classification and a segmentation model fitted on the 63 training images (576x768):
  * the engine's own ``Model.predict`` latency in this process (the model loaded from its package,
    warmed up, torch with its default threads, as the agent runs it), per test image;
  * ``DetectAnomalies`` latency as a client sees it, over the Unix socket of a
    ``lookout-emulator edge-agent`` child process serving the same package: pixels in the message
    (``byte_data``, the mask back in the response), and pixels in POSIX shared memory with the mask
    written there (``anomaly_mask_params``);
the three back to back for each of the 22 test images x --rounds (one request at a time, after
warm-up), so that all three see the same load on a shared machine; with the CPU time per call (this
process's for predict, the agent's for DetectAnomalies) and the median per-image overhead.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_datasets import write_results  # noqa: E402
from engine_bench import cookies_dir, load_cookies, machine  # noqa: E402


def summary(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    return {"p50": round(statistics.median(ordered), 1), "p90": round(ordered[int(0.9 * (len(ordered) - 1))], 1)}


def package(model: Any, kind: str, components: Path) -> None:
    """Write the model as a packaging job would, as component <kind> version 1.0.0."""
    from emulator.edge.package import ARCHIVE_NAME, MANIFEST_NAME, build_archive, new_manifest, seal

    artifact = components.parent / f"artifact-{kind}"
    model.save(artifact)
    manifest = new_manifest(component_name=kind, component_version="1.0.0",
                            model_arn=f"arn:aws:lookoutvision:us-east-1:123456789012:model/bench/{kind}",
                            model_type=kind, image_size=model.image_size, label_colors=model.label_colors)
    archive = build_archive(artifact, manifest)
    folder = components / kind / "1.0.0"
    folder.mkdir(parents=True)
    (folder / ARCHIVE_NAME).write_bytes(archive)
    (folder / MANIFEST_NAME).write_text(json.dumps(seal(manifest, archive, ARCHIVE_NAME)))


def load_packaged(components: Path, kind: str) -> Any:
    """The model loaded in this process from its package, warmed up, as the agent loads it."""
    import engine
    from emulator.edge.package import read_package, unpack_engine

    with tempfile.TemporaryDirectory() as scratch:
        model = engine.load_model(unpack_engine(read_package(components / kind), Path(scratch)))
    model.warmup()
    return model


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (from /proc, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def compare(target: str, pid: int, components: Path, kind: str, images: list[Any], rounds: int) -> dict[str, Any]:
    """Per image, back to back (so both see the same machine load): the engine's predict in this
    process, DetectAnomalies with byte_data, and DetectAnomalies through shared memory."""
    import grpc

    from emulator.edge import edge_agent_pb2 as pb2
    from emulator.edge import edge_agent_pb2_grpc as pb2_grpc

    model = load_packaged(components, kind)
    stub = pb2_grpc.EdgeAgentStub(grpc.insecure_channel(target, options=[
        ("grpc.max_receive_message_length", 64 * 1024 * 1024), ("grpc.max_send_message_length", 64 * 1024 * 1024)]))
    stub.StartModel(pb2.StartModelRequest(model_component=kind))
    while (status := stub.DescribeModel(pb2.DescribeModelRequest(model_component=kind)).model_description).status \
            == pb2.STARTING:
        time.sleep(0.05)
    assert status.status == pb2.RUNNING, status.status_message
    height, width, _ = images[0].shape
    nbytes = width * height * 3
    memory = shared_memory.SharedMemory(create=True, size=2 * nbytes)
    mask_params = pb2.AnomalyMaskParams(
        shared_memory_handle=pb2.SharedMemoryHandle(name=memory.name, offset=nbytes, size=nbytes))

    def in_message(image: Any) -> Any:
        return pb2.DetectAnomaliesRequest(model_component=kind, bitmap=pb2.Bitmap(
            width=width, height=height, byte_data=image.tobytes()))

    def in_shared_memory(image: Any) -> Any:
        memory.buf[:nbytes] = image.tobytes()
        return pb2.DetectAnomaliesRequest(
            model_component=kind, anomaly_mask_params=mask_params,
            bitmap=pb2.Bitmap(width=width, height=height, shared_memory_handle=pb2.SharedMemoryHandle(
                name=memory.name, offset=0, size=nbytes)))

    ms: dict[str, list[float]] = {"engine_predict": [], "byte_data": [], "shared_memory": []}
    cpu: dict[str, float] = dict.fromkeys(ms, 0.0)
    try:
        for image in images[:3]:  # warm-up of the request paths
            stub.DetectAnomalies(in_message(image))
            stub.DetectAnomalies(in_shared_memory(image))
        for _ in range(rounds):
            for image in images:
                start, used = time.perf_counter(), time.process_time()
                model.predict(image)
                ms["engine_predict"].append((time.perf_counter() - start) * 1000)
                cpu["engine_predict"] += time.process_time() - used
                for how, request in (("byte_data", in_message), ("shared_memory", in_shared_memory)):
                    start, used = time.perf_counter(), cpu_seconds(pid)
                    stub.DetectAnomalies(request(image))  # the request is built inside: the client's copy counts
                    ms[how].append((time.perf_counter() - start) * 1000)
                    cpu[how] += cpu_seconds(pid) - used
    finally:
        memory.close()
        memory.unlink()
        stub.StopModel(pb2.StopModelRequest(model_component=kind))
    calls = len(ms["engine_predict"])
    out: dict[str, Any] = {how: {**summary(values), "cpu_ms_per_call": round(cpu[how] * 1000 / calls, 1)}
                           for how, values in ms.items()}
    for how in ("byte_data", "shared_memory"):  # what the agent adds, image by image
        out[how]["overhead_ms_p50"] = round(statistics.median(
            agent - own for agent, own in zip(ms[how], ms["engine_predict"], strict=True)), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cookies", help="cookies dataset directory")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the 22 test images")
    parser.add_argument("--json", help="also write results here")
    args = parser.parse_args()
    root = cookies_dir(args.cookies)
    if not (root / "dataset-files").is_dir():
        sys.exit(f"cookies dataset not found at {root}")
    from engine import FitOptions, fit

    results: dict[str, Any] = {"machine": machine()}
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as scratch:
        components = Path(scratch) / "components"
        tests: dict[str, list[Any]] = {}
        for kind in ("classification", "segmentation"):
            train, test = load_cookies(root, masks=kind == "segmentation")
            colours = {"cracked": "#23A436"} if kind == "segmentation" else None
            package(fit(train, None, FitOptions(seed=0), label_colors=colours), kind, components)
            tests[kind] = [item.image for item in test]
        socket_path = Path(scratch) / "agent.sock"
        agent = subprocess.Popen([sys.executable, "-m", "emulator.cli", "edge-agent", "--components-dir",
                                  str(components), "--socket", str(socket_path)],
                                 stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            line = agent.stdout.readline()  # type: ignore[union-attr]
            assert "listening on" in line, line
            for kind, images in tests.items():
                results[kind] = compare(f"unix://{socket_path}", agent.pid, components, kind, images, args.rounds)
        finally:
            agent.terminate()
            agent.wait(timeout=60)
    write_results(results, Path(args.json) if args.json else None)


if __name__ == "__main__":
    main()
