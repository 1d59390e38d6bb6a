"""Fleet benchmark (issue 23): one embedded server next to PostgreSQL nodes, through boto3 as clients see them.

    .venv/bin/python benchmarks/fleet_bench.py [--cookies DIR] [--calls N] [--json FILE]

Everything runs on this machine: a throwaway PostgreSQL cluster (tests/postgres_cluster.py, Debian's
server package), a ``moto_server`` as the fleet's S3 store, and ``lookout-emulator serve`` processes
started with the README's flags (``db upgrade`` first, then ``serve --database-url ... --s3-endpoint-url
... --data-dir ...``). Parts 1 and 2 share a database; each take-over run has its own. The model is
trained on cookies images (10 normals; a test dataset of 10 normals and 10 anomalies; no fine-tuning),
so DetectAnomalies costs what it costs on real 576x768 JPEGs.

1. embedded (SQLite, embedded S3) and one PostgreSQL node, side by side: CreateModel's answer time and
   the time until a worker starts the training (the node's ``event=started kind=train`` log line);
   then, with each model hosted (1 inference unit), ``--calls`` sequential DetectAnomalies per server
   in four interleaved rounds (a change in the neighbours' load falls on both alike): p50, p95, the
   server's CPU time per call (/proc/<pid>/stat, all threads) and the PostgreSQL server's;
2. requests/s with 1, 2 and 3 PostgreSQL nodes (the PostgreSQL node of 1 and two more, hosting the
   same model): 8 client threads spread ``2 x --calls`` DetectAnomalies calls round-robin over the
   nodes in use; CPU time per call summed over all three nodes;
3. take-over after a SIGKILL: two nodes, one frozen while the other starts the training; the trainer
   is killed (with its children) as the other resumes; the time from the kill to the survivor's
   ``event=taken_over`` line, with a 0.5 s heartbeat and with the default one.

The machine is shared, so wall-clock figures move with the neighbours' load; CPU time per call does
not, which is why the paper estimate for a bigger box starts from it.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from bench_datasets import DEFAULT_ROOTS, Picture, cookies, write_results
from lifecycle_bench import cpu_seconds, machine, percentile

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(1, str(REPO))  # the test helpers: the cluster, moto_server and serve processes the tests use

from emulator.config import Settings  # noqa: E402
from emulator.testing import TEST_CREDENTIALS  # noqa: E402
from tests.api.core_support import CLI, ServerProcess, fleet_node, migrated_database, moto_server  # noqa: E402
from tests.api.datasets_support import BUCKET, labelled  # noqa: E402
from tests.api.models_support import OUTPUT_BUCKET, ModelKit  # noqa: E402
from tests.postgres_cluster import throwaway_cluster  # noqa: E402

SHORT_HEARTBEAT_S = 0.5
CLIENTS = 8
TRAIN_NORMALS, TEST_NORMALS, TEST_ANOMALIES = 10, 10, 10
FLEET_SIZES = (1, 2, 3)
SETTLE_S = 60  # how long a node may take to load a model StartModel asked for elsewhere


def cookies_split(root: Path) -> dict[str, list[Picture]]:
    """Training and test pictures of the cookies dataset: normals to train on, a balanced test set."""
    pictures = cookies(root, "train")
    normals = [p for p in pictures if p.label == "normal"]
    anomalies = [p for p in pictures if p.label == "anomaly"]
    return {"train": normals[:TRAIN_NORMALS],
            "test": normals[TRAIN_NORMALS:TRAIN_NORMALS + TEST_NORMALS] + anomalies[:TEST_ANOMALIES]}


class Bench:
    """One node's project: datasets staged from the cookies split, its model, DetectAnomalies calls."""

    def __init__(self, node: ServerProcess, s3: Any, project: str, split: dict[str, list[Picture]]) -> None:
        self.node, self.split = node, split
        self.kit = ModelKit(node.client("lookoutvision"), s3, project)
        for bucket in (BUCKET, OUTPUT_BUCKET):  # the buckets the kit stages in and CreateModel writes to
            with contextlib.suppress(self.kit.s3.exceptions.BucketAlreadyOwnedByYou):
                self.kit.s3.create_bucket(Bucket=bucket)
        self.kit.lookout.create_project(ProjectName=project)
        for dataset_type, pictures in split.items():
            lines = [labelled(self.kit.put(f"{dataset_type}/{p.path.name}", p.path.read_bytes()), p.label)
                     for p in pictures]
            assert self.kit.create(dataset_type, lines)["Status"] == "CREATE_COMPLETE"

    def create_model(self) -> dict[str, float]:
        """CreateModel: its answer time, and the time until a node logs that it started the training."""
        started = time.monotonic()
        version = self.kit.create_model()["ModelVersion"]
        answered = time.monotonic()
        line = f"event=started kind=train subject={self.kit.project}/{version}"
        while (training := self.node.seen_at(line)) is None:
            time.sleep(0.005)
        return {"create_model_answer_ms": round((answered - started) * 1000, 1),
                "create_model_to_training_started_ms": round((training - started) * 1000, 1)}


def images(root: Path) -> list[bytes]:
    return [path.read_bytes() for path in sorted((root / "test-images").glob("*.jpg"))]


def detect(client: Any, project: str, body: bytes) -> None:
    client.detect_anomalies(ProjectName=project, ModelVersion="1", Body=body, ContentType="image/jpeg")


def database_cpu_seconds(port: int) -> float:
    """CPU time used so far by the PostgreSQL server listening on `port`: its postmaster and the
    processes it started (the nodes' pooled connections, which live as long as the nodes)."""
    processes = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            processes[int(stat.parent.name)] = (int(stat.read_text().rsplit(")", 1)[1].split()[1]),
                                                (stat.parent / "cmdline").read_bytes().split(b"\0"))
    postmaster = next(pid for pid, (_, argv) in processes.items()
                      if argv[0].endswith(b"/postgres") and str(port).encode() in argv)
    return sum(cpu_seconds(pid) or 0.0 for pid, (parent, _) in processes.items() if postmaster in (pid, parent))


def latency(servers: dict[str, tuple[ServerProcess, str]], bodies: list[bytes], calls: int,
            database_port: int, rounds: int = 4) -> dict[str, dict[str, float]]:
    """Sequential DetectAnomalies on each server in turn, `rounds` rounds of `calls / rounds` calls
    each (so that a change in the neighbours' load falls on both alike): wall-clock p50 / p95, the
    server's CPU time per call and, for the PostgreSQL node, the database server's."""
    clients = {name: node.client("lookoutvision") for name, (node, _) in servers.items()}
    times: dict[str, list[float]] = {name: [] for name in servers}
    cpu = dict.fromkeys(servers, 0.0)
    database = dict.fromkeys(servers, 0.0)
    for name, (_, project) in servers.items():
        for body in bodies[:3]:
            detect(clients[name], project, body)  # warm-up
    for _ in range(rounds):
        for name, (node, project) in servers.items():
            before, database_before = cpu_seconds(node.process.pid) or 0.0, database_cpu_seconds(database_port)
            for call in range(calls // rounds):
                started = time.perf_counter()
                detect(clients[name], project, bodies[call % len(bodies)])
                times[name].append((time.perf_counter() - started) * 1000)
            cpu[name] += (cpu_seconds(node.process.pid) or 0.0) - before
            database[name] += database_cpu_seconds(database_port) - database_before
    return {name: {"calls": len(times[name]), "p50_ms": round(statistics.median(times[name]), 1),
                   "p95_ms": round(percentile(times[name], 0.95), 1),
                   "server_cpu_ms_per_call": round(cpu[name] * 1000 / len(times[name]), 1),
                   "database_cpu_ms_per_call": round(database[name] * 1000 / len(times[name]), 2)}
            for name in servers}


def trained_and_hosted(bench: Bench) -> dict[str, float]:
    """Train model 1 and host it on 1 inference unit; CreateModel's figures."""
    figures = bench.create_model()
    assert bench.kit.wait_model("1")["Status"] == "TRAINED"
    bench.kit.host("1")
    return figures


def throughput(nodes: list[ServerProcess], used: int, project: str, bodies: list[bytes], calls: int,
               database_port: int) -> dict[str, float]:
    """`CLIENTS` threads spread `calls` DetectAnomalies round-robin over the first `used` nodes; CPU
    time per call of all the nodes (idle ones too: they are part of the fleet) and of the database."""
    clients = [nodes[i % used].client("lookoutvision") for i in range(CLIENTS)]
    before = [cpu_seconds(node.process.pid) or 0.0 for node in nodes]
    database_before = database_cpu_seconds(database_port)

    def worker(index: int) -> None:
        for call in range(index, calls, CLIENTS):
            detect(clients[index], project, bodies[call % len(bodies)])

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(worker, range(CLIENTS)))
    elapsed = time.perf_counter() - started
    cpu = sum((cpu_seconds(node.process.pid) or 0.0) - was for node, was in zip(nodes, before, strict=True))
    database = database_cpu_seconds(database_port) - database_before
    return {"nodes": used, "calls": calls, "requests_per_s": round(calls / elapsed, 1),
            "server_cpu_ms_per_call": round(cpu * 1000 / calls, 1),
            "database_cpu_ms_per_call": round(database * 1000 / calls, 2)}


def answers_everywhere(nodes: list[ServerProcess], project: str, body: bytes) -> None:
    for node in nodes:
        client, deadline = node.client("lookoutvision"), time.monotonic() + SETTLE_S
        while True:
            try:
                detect(client, project, body)
                break
            except Exception:  # noqa: BLE001 - not hosted there yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def take_over(root: Path, maintenance_url: str, s3: Any, s3_endpoint: str, split: dict[str, list[Picture]],
              heartbeat: float) -> dict[str, float]:
    """Seconds from the SIGKILL of the node running a training to another node taking it over."""
    flags = ("--finetune-epochs", "0")
    with migrated_database(maintenance_url) as url, stopping() as started:
        trainer = started(fleet_node(root, f"a-{heartbeat}", url, s3_endpoint, heartbeat, *flags))
        survivor = started(fleet_node(root, f"b-{heartbeat}", url, s3_endpoint, heartbeat, *flags))
        bench = Bench(trainer, s3, "takeover", split)
        survivor.signal_group(signal.SIGSTOP)  # so that the other node takes the training
        bench.create_model()
        trainer.signal_group(signal.SIGKILL)
        survivor.signal_group(signal.SIGCONT)
        killed = time.monotonic()
        line = "event=taken_over kind=train subject=takeover/1"
        while (taken := survivor.seen_at(line)) is None:
            assert time.monotonic() - killed < 300, "no take-over within 300 s"
            time.sleep(0.01)
        return {"heartbeat_s": heartbeat, "take_over_s": round(taken - killed, 2)}


@contextlib.contextmanager
def stopping() -> Iterator[Callable[[ServerProcess], ServerProcess]]:
    """Collects the nodes a block starts and kills them (with their children) when it ends."""
    nodes: list[ServerProcess] = []

    def started(node: ServerProcess) -> ServerProcess:
        nodes.append(node)
        return node

    try:
        yield started
    finally:
        for node in nodes:
            if node.process.poll() is None:
                node.signal_group(signal.SIGKILL)
                node.process.wait(30)


def run(root: Path, cookies_root: Path, calls: int) -> dict[str, Any]:
    split, bodies = cookies_split(cookies_root), images(cookies_root)
    results: dict[str, Any] = {}
    flags, heartbeat = ("--finetune-epochs", "0"), Settings.job_heartbeat_seconds
    with contextlib.ExitStack() as stack:
        maintenance_url = stack.enter_context(throwaway_cluster())
        database_port = int(maintenance_url.rsplit(":", 1)[1].split("/")[0])
        s3_endpoint, _ = stack.enter_context(moto_server(stack.enter_context(pytest.MonkeyPatch.context())))
        s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", **TEST_CREDENTIALS)
        url = stack.enter_context(migrated_database(maintenance_url))
        started = stack.enter_context(stopping())
        embedded = started(ServerProcess(CLI, "--data-dir", str(root / "embedded"), *flags, own_group=True))
        nodes = [started(fleet_node(root, "node-0", url, s3_endpoint, heartbeat, *flags))]
        results["create_model"] = {
            "embedded": trained_and_hosted(Bench(embedded, embedded.client("s3"), "embedded", split)),
            "postgresql": trained_and_hosted(Bench(nodes[0], s3, "fleet", split))}
        results["detect_latency"] = latency({"embedded": (embedded, "embedded"), "postgresql": (nodes[0], "fleet")},
                                            bodies, calls, database_port)
        embedded.signal_group(signal.SIGKILL)
        nodes += [started(fleet_node(root, f"node-{i}", url, s3_endpoint, heartbeat, *flags)) for i in (1, 2)]
        answers_everywhere(nodes, "fleet", bodies[0])
        results["throughput"] = [throughput(nodes, used, "fleet", bodies, 2 * calls, database_port)
                                 for used in FLEET_SIZES]
        for node in nodes:
            node.signal_group(signal.SIGKILL)
        results["take_over"] = [take_over(root, maintenance_url, s3, s3_endpoint, split, heartbeat)
                                for heartbeat in (SHORT_HEARTBEAT_S, Settings.job_heartbeat_seconds)]
    cpu = results["detect_latency"]["postgresql"]["server_cpu_ms_per_call"]
    results["estimate_16_cores_cpu_bound_req_s"] = round(16 * 1000 / cpu, 1)  # on paper: every core predicting
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cookies", type=Path, default=DEFAULT_ROOTS["cookies"], help="the shared cookies dataset")
    parser.add_argument("--calls", type=int, default=200, help="sequential DetectAnomalies calls per latency figure")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    print("command:", " ".join(sys.argv), flush=True)
    info = machine()
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as root:
        results = {"machine": info, **run(Path(root), args.cookies, args.calls)}
    results["machine"]["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    write_results(results, args.json)


if __name__ == "__main__":
    main()
