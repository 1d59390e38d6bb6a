"""Hosting across nodes: ``serve`` processes on one PostgreSQL database and one S3 store (a ``moto_server``).

StartModel on one node hosts the model on every inference node; a node killed with SIGKILL drops out
by its heartbeat while the others keep answering; a restarted node rejoins and loads what is hosted;
StopModel stops it everywhere; ``--role`` splits the API from inference. Black-box through boto3.
"""
from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from emulator.store import Store
from emulator.testing import TEST_CREDENTIALS
from tests.api.core_support import ServerProcess, error_of, fleet_node, raw_request
from tests.api.models_support import ModelKit, encode, new_kit, texture, with_defect
from tests.api.test_ops import sample, scrape
from tests.store.test_store import needs_postgres

pytestmark = needs_postgres

HEARTBEAT_S = 0.5  # a node without a heartbeat for three of these is dead
NORMAL, ANOMALY = encode(texture(8000)), encode(with_defect(9000)[0])


def _node(tmp_path: Path, name: str, database_url: str, s3_endpoint: str, *flags: str) -> ServerProcess:
    # Fine-tuning off: these tests are about where a model runs, not how well it was trained.
    return fleet_node(tmp_path, name, database_url, s3_endpoint, HEARTBEAT_S, "--finetune-epochs", "0", *flags)


def _trained(node: ServerProcess, s3_endpoint: str, project: str) -> ModelKit:
    """A trained model, version 1, of a new project, through `node`."""
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", **TEST_CREDENTIALS)
    kit = new_kit(node.client("lookoutvision"), s3, project)
    kit.stage("train", normals=20, anomalies=10)
    kit.create_model()
    assert kit.wait_model("1")["Status"] == "TRAINED"
    return kit


def _through(kit: ModelKit, node: ServerProcess) -> ModelKit:
    """The same project, driven through another node."""
    return ModelKit(node.client("lookoutvision"), kit.s3, kit.project)


def _answers(kit: ModelKit) -> None:
    assert kit.detect("1", NORMAL)["IsAnomalous"] is False
    assert kit.detect("1", ANOMALY)["IsAnomalous"] is True


def _refused(kit: ModelKit) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as err:
        kit.detect("1", NORMAL)
    response = error_of(err)
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


def _hosted_here(node: ServerProcess) -> float:
    return sample(scrape(node.endpoint_url), "lookout_hosted_models")


def _node_id(node: ServerProcess) -> str:
    found = re.search(r"hosting node (\S+) started", node.output)
    assert found, node.output
    return found.group(1)


def _listed_nodes(database_url: str) -> set[str]:
    store = Store.open(database_url)
    try:
        return {node.node_id for node in store.hostings.live_nodes(missed=1000)}
    finally:
        store.close()


def _kill(node: ServerProcess) -> None:
    node.process.kill()  # SIGKILL: no shutdown code runs
    assert node.process.wait(30) == -signal.SIGKILL


def _stop_all(nodes: list[ServerProcess]) -> None:
    for node in nodes:
        if node.process.poll() is None:
            node.process.kill()
            node.process.wait(30)


def test_hosting_reaches_every_node_outlives_a_dead_one_and_stops_everywhere(tmp_path, database_url, s3_endpoint):
    nodes = [_node(tmp_path, name, database_url, s3_endpoint) for name in ("a", "b")]
    try:
        a, b = nodes
        on_a = _trained(a, s3_endpoint, "fleet")
        on_b = _through(on_a, b)
        on_a.host("1")
        assert on_b.model("1")["Status"] == "HOSTED"
        _answers(on_a)
        _answers(on_b)  # B loaded it too (or waits for its own load to finish)
        assert (_hosted_here(a), _hosted_here(b)) == (1, 1)

        dead = _node_id(a)
        _kill(a)
        _answers(on_b)  # the other node keeps answering
        time.sleep(4 * HEARTBEAT_S)  # A's heartbeat is now three heartbeats old: it has dropped out
        assert on_b.model("1")["Status"] == "HOSTED"
        assert dead not in _listed_nodes(database_url)

        restarted = _node(tmp_path, "a", database_url, s3_endpoint)  # A's data dir, a new node id
        nodes.append(restarted)
        on_restarted = _through(on_a, restarted)
        _answers(on_restarted)  # it rejoined and loaded what is hosted
        assert _node_id(restarted) != dead

        assert on_b.lookout.stop_model(ProjectName="fleet", ModelVersion="1")["Status"] == "STOPPING_HOSTING"
        described = on_b.wait_model("1", timeout=30)
        assert described["Status"] == "TRAINED" and "MinInferenceUnits" not in described
        for kit in (on_b, on_restarted):
            code, status, message = _refused(kit)
            assert (code, status) == ("ConflictException", 409) and "TRAINED" in message
        assert (_hosted_here(b), _hosted_here(restarted)) == (0, 0)
        for node in (b, restarted):
            node.stop_cleanly(signal.SIGTERM)
        assert _listed_nodes(database_url) == set()  # a node that stops leaves at once
    finally:
        _stop_all(nodes)


def test_roles_split_the_api_from_inference(tmp_path, database_url, s3_endpoint):
    nodes = [_node(tmp_path, "api", database_url, s3_endpoint, "--role", "api,worker"),
             _node(tmp_path, "inference", database_url, s3_endpoint, "--role", "inference")]
    try:
        api, inference = nodes
        on_api = _trained(api, s3_endpoint, "roles")  # the api node's worker trains it
        on_inference = _through(on_api, inference)
        on_api.host("1")  # HOSTED: the inference node loaded it
        _answers(on_inference)

        code, status, message = _refused(on_api)
        assert (code, status) == ("AccessDeniedException", 403)
        assert "roles: api,worker" in message and "lookoutvision:DetectAnomalies" in message
        assert "inference role" in message
        with pytest.raises(ClientError) as err:
            on_inference.model("1")
        assert error_of(err)["Error"]["Code"] == "AccessDeniedException"
        assert "roles: inference" in error_of(err)["Error"]["Message"]
        assert "api role" in error_of(err)["Error"]["Message"]
        with pytest.raises(ClientError) as err:
            inference.client("s3").list_buckets()
        assert error_of(err)["Error"]["Code"] == "AccessDenied"
        status, _, body = raw_request(inference.endpoint_url, "GET", "/console/")
        assert status == 403 and b"the web console" in body
        assert raw_request(inference.endpoint_url, "GET", "/healthz")[0] == 200
        assert (_hosted_here(api), _hosted_here(inference)) == (0, 1)
        assert "event=started" in api.output and "event=started" not in inference.output  # no worker role: no jobs

        _kill(inference)  # the only inference node: nothing serves the model now
        time.sleep(4 * HEARTBEAT_S)
        assert on_api.model("1")["Status"] == "HOSTED"  # what should run has not changed
        replacement = _node(tmp_path, "inference-2", database_url, s3_endpoint, "--role", "inference")
        nodes.append(replacement)
        _answers(_through(on_api, replacement))  # a new inference node loads the hosted model

        on_api.lookout.stop_model(ProjectName="roles", ModelVersion="1")
        assert on_api.wait_model("1", timeout=30)["Status"] == "TRAINED"
        assert _refused(_through(on_api, replacement))[0] == "ConflictException"
        for node in (api, replacement):
            node.stop_cleanly(signal.SIGTERM)
    finally:
        _stop_all(nodes)
