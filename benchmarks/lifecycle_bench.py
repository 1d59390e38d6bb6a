"""Model life cycle benchmark on the shared cookies dataset, through boto3 as a client sees it.

    .venv/bin/python benchmarks/lifecycle_bench.py [--cookies DIR] [--endpoint-url URL] [--json FILE]

Without --endpoint-url it starts ``lookout-emulator serve`` in a child process on a free port with a
temporary data dir, so the server and this client do not share an interpreter. Steps and figures:

1. CreateDataset from the cookies template manifest (63 images, 32 with masks) as a single
   dataset, then CreateModel -> TRAINED: the time, and DescribeModel's Performance (test split).
2. StartModel with 2 inference units -> HOSTED: the time.
3. DetectAnomalies on the 22 separate test images: precision, recall and F1 (anomaly positive).
4. Latency: sequential DetectAnomalies calls, p50 and p99.
5. Throughput: 8 concurrent clients, requests per second and errors.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
from bench_datasets import write_results
from botocore.config import Config

REPO = Path(__file__).resolve().parents[1]
DEFAULT_COOKIES = REPO.parent / "shared" / "datasets" / "cookies"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}
BUCKET = "lifecycle-bench"
PROJECT = f"cookies-bench-{os.getpid()}"  # unique, so that --endpoint-url may name a used emulator
LISTENING = "lookout-emulator listening on "


def start_server(data_dir: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, "-m", "emulator.cli", "serve", "--port", "0", "--data-dir", data_dir],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(LISTENING):
            threading.Thread(target=process.stdout.read, daemon=True).start()  # keep draining its output
            return process, line[len(LISTENING):].strip()
    raise SystemExit("the emulator did not start")


def _stat_fields(stat: Path) -> list[str]:
    """/proc/PID/stat's fields after the command name (which may hold spaces): state, ppid, ..."""
    return stat.read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int | None, tree: bool = False) -> float | None:
    """CPU time (user + system, all threads) the server process has used so far; None if unknown.
    With `tree`, also that of every process below it and of their children already ended: a training
    runs in a child of the server's forkserver (emulator/training_process.py), which the server's
    own figure leaves out.

    On a shared machine wall-clock figures depend on the other load; CPU time per step does not."""
    stat = Path(f"/proc/{pid}/stat")
    if pid is None or not stat.exists():
        return None
    if not tree:
        fields = _stat_fields(stat)
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    processes: dict[int, tuple[int, int]] = {}  # pid: (parent, clock ticks: own and ended children's)
    for entry in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):  # a process that ended meanwhile
            fields = _stat_fields(entry)
            processes[int(entry.parent.name)] = (int(fields[1]), sum(int(fields[i]) for i in range(11, 15)))
    below, ticks = [pid], 0
    while below:
        current = below.pop()
        ticks += processes.get(current, (0, 0))[1]
        below.extend(child for child, (parent, _) in processes.items() if parent == current)
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_delta(pid: int | None, before: float | None, scale: float = 1.0, tree: bool = False) -> float | None:
    after = cpu_seconds(pid, tree)
    return None if after is None or before is None else round((after - before) * scale, 3)


def wait_for(describe: Callable[[], dict[str, Any]], busy: tuple[str, ...],
             poll: float) -> tuple[dict[str, Any], float]:
    """Poll until the status leaves `busy`; (last description, seconds waited)."""
    started = time.perf_counter()
    while True:
        described = describe()
        if described["Status"] not in busy:
            return described, time.perf_counter() - started
        time.sleep(poll)


def stage_dataset(lookout: Any, s3: Any, cookies: Path) -> None:
    files = cookies / "dataset-files"
    s3.create_bucket(Bucket=BUCKET)
    for folder in ("training-images", "mask-images"):
        for path in sorted((files / folder).iterdir()):
            s3.put_object(Bucket=BUCKET, Key=f"{folder}/{path.name}", Body=path.read_bytes())
    lines = []
    for raw in (files / "manifests" / "template.manifest").read_text().splitlines():
        line = json.loads(raw)
        for attribute in ("source-ref", "anomaly-mask-ref"):
            if attribute in line:
                line[attribute] = f"s3://{BUCKET}/{line[attribute]}"
        lines.append(json.dumps(line))
    s3.put_object(Bucket=BUCKET, Key="train.manifest", Body="\n".join(lines).encode())
    lookout.create_project(ProjectName=PROJECT)
    lookout.create_dataset(ProjectName=PROJECT, DatasetType="train", DatasetSource={
        "GroundTruthManifest": {"S3Object": {"Bucket": BUCKET, "Key": "train.manifest"}}})
    dataset, _ = wait_for(lambda: lookout.describe_dataset(ProjectName=PROJECT, DatasetType="train")[
        "DatasetDescription"], ("CREATE_IN_PROGRESS",), 0.2)
    if dataset["Status"] != "CREATE_COMPLETE":
        raise SystemExit(f"dataset import failed: {dataset.get('StatusMessage')}")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def run(endpoint_url: str, server_pid: int | None, cookies: Path, latency_calls: int,
        throughput_calls: int) -> dict[str, Any]:
    config = Config(max_pool_connections=16, retries={"max_attempts": 1})
    lookout = boto3.client("lookoutvision", endpoint_url=endpoint_url, config=config, **CREDENTIALS)
    s3 = boto3.client("s3", endpoint_url=endpoint_url, **CREDENTIALS)
    stage_dataset(lookout, s3, cookies)

    def model() -> dict[str, Any]:
        return lookout.describe_model(ProjectName=PROJECT, ModelVersion="1")["ModelDescription"]

    cpu = cpu_seconds(server_pid, tree=True)
    lookout.create_model(ProjectName=PROJECT, OutputConfig={"S3Location": {"Bucket": BUCKET, "Prefix": "output/"}})
    trained, train_seconds = wait_for(model, ("TRAINING",), 0.1)
    train_cpu = cpu_delta(server_pid, cpu, tree=True)
    if trained["Status"] != "TRAINED":
        raise SystemExit(f"training failed: {trained['StatusMessage']}")
    lookout.start_model(ProjectName=PROJECT, ModelVersion="1", MinInferenceUnits=2)
    hosted, host_seconds = wait_for(model, ("STARTING_HOSTING",), 0.02)
    if hosted["Status"] != "HOSTED":
        raise SystemExit(f"hosting failed: {hosted['StatusMessage']}")

    images = [(path.name, path.read_bytes()) for path in sorted((cookies / "test-images").glob("*.jpg"))]

    def detect(client: Any, body: bytes) -> dict[str, Any]:
        return client.detect_anomalies(ProjectName=PROJECT, ModelVersion="1", Body=body,
                                       ContentType="image/jpeg")["DetectAnomalyResult"]

    counts = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    for name, body in images:
        predicted, actual = detect(lookout, body)["IsAnomalous"], "anomaly" in name
        counts[("t" if predicted == actual else "f") + ("p" if predicted else "n")] += 1
    precision = counts["tp"] / max(1, counts["tp"] + counts["fp"])
    recall = counts["tp"] / max(1, counts["tp"] + counts["fn"])
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0

    latencies = []
    cpu = cpu_seconds(server_pid)
    for i in range(latency_calls):
        started = time.perf_counter()
        detect(lookout, images[i % len(images)][1])
        latencies.append((time.perf_counter() - started) * 1000)
    latency_cpu = cpu_delta(server_pid, cpu, 1000 / latency_calls)

    clients = [boto3.client("lookoutvision", endpoint_url=endpoint_url, config=config, **CREDENTIALS) for _ in range(8)]
    errors: list[str] = []

    def worker(index: int) -> None:
        for i in range(index, throughput_calls, len(clients)):
            try:
                detect(clients[index], images[i % len(images)][1])
            except Exception as exc:  # noqa: BLE001 - every failure counts as an error of the run
                errors.append(repr(exc))

    started, cpu = time.perf_counter(), cpu_seconds(server_pid)
    with ThreadPoolExecutor(len(clients)) as pool:
        list(pool.map(worker, range(len(clients))))
    elapsed = time.perf_counter() - started
    throughput_cpu = cpu_delta(server_pid, cpu, 1000 / throughput_calls)
    lookout.stop_model(ProjectName=PROJECT, ModelVersion="1")
    return {
        "create_model_to_trained_s": round(train_seconds, 2),
        "training_server_cpu_s": train_cpu,
        "training_status_message": trained["StatusMessage"],
        "describe_model_performance": trained["Performance"],
        "start_model_to_hosted_s": round(host_seconds, 3),
        "test_set": {"images": len(images), **counts, "precision": round(precision, 4), "recall": round(recall, 4),
                     "f1": round(f1, 4)},
        "detect_latency_ms": {"calls": latency_calls, "p50": round(statistics.median(latencies), 1),
                              "p99": round(percentile(latencies, 0.99), 1), "server_cpu_ms_per_call": latency_cpu},
        "throughput": {"inference_units": 2, "clients": len(clients), "calls": throughput_calls,
                       "requests_per_s": round(throughput_calls / elapsed, 1), "server_cpu_ms_per_call": throughput_cpu,
                       "errors": len(errors),
                       "first_error": errors[0] if errors else None},
    }


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"cpu": cpu, "cpus": os.cpu_count(), "python": platform.python_version(),
            "load_average_1m_at_start": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cookies", type=Path, default=DEFAULT_COOKIES, help="the shared cookies dataset")
    parser.add_argument("--endpoint-url", help="benchmark this running emulator instead of starting one")
    parser.add_argument("--latency-calls", type=int, default=200)
    parser.add_argument("--throughput-calls", type=int, default=400)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if not (args.cookies / "dataset-files" / "manifests" / "template.manifest").exists():
        raise SystemExit(f"the cookies dataset is not at {args.cookies}")
    info = machine()
    with tempfile.TemporaryDirectory(prefix="lifecycle-bench-") as data_dir:
        process, endpoint_url = (None, args.endpoint_url) if args.endpoint_url else start_server(data_dir)
        try:
            results = {"machine": info, **run(endpoint_url, process.pid if process else None, args.cookies,
                                              args.latency_calls, args.throughput_calls)}
        finally:
            if process is not None:
                process.terminate()
                process.wait(60)
    write_results(results, args.json)


if __name__ == "__main__":
    main()
