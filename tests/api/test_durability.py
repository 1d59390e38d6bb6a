"""Durability: nothing committed is lost to ``kill -9``; start-up recovery runs before the server
accepts requests; parallel clients never corrupt state."""
from __future__ import annotations

import signal
import socket
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

from botocore.exceptions import ClientError

from emulator.config import Settings
from emulator.server import Server
from tests.api.core_support import ServerProcess

CLI = [sys.executable, "-m", "emulator.cli"]


def test_kill_9_loses_nothing_committed(tmp_path):
    server = ServerProcess(CLI, "--data-dir", str(tmp_path))
    lookout, s3 = server.client("lookoutvision"), server.client("s3")
    arns = {name: lookout.create_project(ProjectName=name)["ProjectMetadata"]["ProjectArn"]
            for name in ("kept", "tagged", "deleted")}
    lookout.create_dataset(ProjectName="kept", DatasetType="train")
    lookout.tag_resource(ResourceArn=arns["tagged"], Tags=[{"Key": "owner", "Value": "qa"}])
    lookout.delete_project(ProjectName="deleted")
    token = uuid.uuid4().hex
    lookout.create_project(ProjectName="idempotent", ClientToken=token)
    s3.create_bucket(Bucket="durable")
    s3.put_object(Bucket="durable", Key="images/0.png", Body=b"\x89PNG...", ContentType="image/png")
    s3.put_object(Bucket="durable", Key="gone.txt", Body=b"x")
    s3.delete_object(Bucket="durable", Key="gone.txt")
    server.process.kill()  # SIGKILL: no shutdown code runs
    assert server.process.wait(30) == -signal.SIGKILL

    server = ServerProcess(CLI, "--data-dir", str(tmp_path))
    lookout, s3 = server.client("lookoutvision"), server.client("s3")
    names = sorted(p["ProjectName"] for p in lookout.list_projects()["Projects"])
    assert names == ["idempotent", "kept", "tagged"]
    datasets = lookout.describe_project(ProjectName="kept")["ProjectDescription"]["Datasets"]
    assert [d["DatasetType"] for d in datasets] == ["train"]
    assert lookout.list_tags_for_resource(ResourceArn=arns["tagged"])["Tags"] == [{"Key": "owner", "Value": "qa"}]
    assert lookout.create_project(ProjectName="idempotent", ClientToken=token)["ProjectMetadata"]["ProjectName"] \
        == "idempotent"  # the token's first result is replayed, not a name conflict
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="durable")["Contents"]] == ["images/0.png"]
    got = s3.get_object(Bucket="durable", Key="images/0.png")
    assert (got["Body"].read(), got["ContentType"]) == (b"\x89PNG...", "image/png")
    server.stop_cleanly(signal.SIGINT)  # Ctrl-C: a clean shutdown
    assert "stopped" in server.output


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_recovery_hooks_run_before_the_port_accepts(tmp_path):
    port = _free_port()
    observed: list[str] = []

    def probe(backend):
        with socket.socket() as client:
            observed.append("refused" if client.connect_ex(("127.0.0.1", port)) else "accepted")
        backend.store.projects.add("recovered", "arn", 0)

    with Server(Settings(data_dir=tmp_path, port=port), extra_recovery=[probe]) as server:
        assert observed == ["refused"]
        assert server.backend.store.projects.get("recovered") is not None


def test_parallel_clients_never_corrupt_state(emulator, lookout):
    run = uuid.uuid4().hex[:8]
    contested = f"contested-{run}"
    barrier = threading.Barrier(8)

    def client_work(worker: int) -> tuple[str, list[str]]:
        barrier.wait()
        try:
            lookout.create_project(ProjectName=contested)
            outcome = "created"
        except ClientError as err:
            outcome = err.response["Error"]["Code"]
        kept = []
        for i in range(6):
            name = f"par-{run}-{worker}-{i}"
            lookout.create_project(ProjectName=name)
            if i % 2:
                lookout.delete_project(ProjectName=name)
            else:
                kept.append(name)
        return outcome, kept

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(client_work, range(8)))
    outcomes = sorted(outcome for outcome, _ in results)
    assert outcomes == ["ConflictException"] * 7 + ["created"]
    expected = sorted([contested] + [name for _, kept in results for name in kept])
    listed = lookout.get_paginator("list_projects").paginate(PaginationConfig={"PageSize": 7}).build_full_result()
    assert sorted(p["ProjectName"] for p in listed["Projects"] if run in p["ProjectName"]) == expected
    if emulator.backend.store.database.is_sqlite:
        with emulator.backend.store.transaction() as db:
            assert db.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"


def test_parallel_tagging_respects_the_limit(lookout, project_name):
    arn = lookout.create_project(ProjectName=project_name)["ProjectMetadata"]["ProjectArn"]

    def tag(worker: int) -> str:
        try:
            lookout.tag_resource(ResourceArn=arn, Tags=[{"Key": f"w{worker}-{i}", "Value": "v"} for i in range(7)])
            return "tagged"
        except ClientError as err:
            return err.response["Error"]["Code"]

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(tag, range(10)))  # 70 tags asked for, 50 allowed: 7 requests fit
    assert outcomes.count("tagged") == 7
    assert outcomes.count("ServiceQuotaExceededException") == 3
    assert len(lookout.list_tags_for_resource(ResourceArn=arn)["Tags"]) == 49
