"""Console trial detections in a fleet (``serve`` processes on one PostgreSQL database and one S3
store): trials on one model from two nodes share its hosting, and the last one to end, wherever it
ran, stops it; a worker-only node of a split fleet runs a trial to COMPLETED. Driven through the
console's HTTP routes and boto3, as a user and a script would.
"""
from __future__ import annotations

import time

import requests

from tests.api.core_support import ServerProcess
from tests.api.models_support import ModelKit, encode, texture
from tests.api.test_hosting_fleet import _kill, _node, _stop_all, _through, _trained
from tests.store.test_store import needs_postgres

pytestmark = needs_postgres


def _images(kit: ModelKit, name: str, count: int) -> str:
    """`count` images under a prefix of their own; the s3:// location a trial reads them from."""
    refs = [kit.put(f"trials/{name}/{i}.png", encode(texture(7000 + i))) for i in range(count)]
    return refs[0].rsplit("/", 1)[0] + "/"


def _run_trial(node: ServerProcess, kit: ModelKit, name: str, location: str) -> None:
    """Start a trial detection of model 1 through `node`'s console, as the console's form does."""
    reply = requests.post(f"{node.endpoint_url}/console/projects/{kit.project}/trials", timeout=60,
                          data={"name": name, "version": "1", "s3_uri": location},
                          headers={"Accept": "application/json"})
    assert reply.status_code == 200, reply.text


def _trial_status(node: ServerProcess, kit: ModelKit, name: str) -> dict[str, str]:
    reply = requests.get(f"{node.endpoint_url}/console/projects/{kit.project}/trials/{name}/status.json", timeout=30)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def _finished(node: ServerProcess, kit: ModelKit, name: str, timeout: float = 240) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while (status := _trial_status(node, kit, name))["Status"] == "IN_PROGRESS":
        assert time.monotonic() < deadline, f"trial {name} did not finish: {status}"
        time.sleep(0.1)
    return status


def _detected_all(status: dict[str, str], count: int) -> None:
    assert status["Status"] == "COMPLETED", status
    assert status["StatusMessage"].startswith(f"Detected {count} images:"), status  # none failed


def test_trials_on_one_model_from_two_nodes_share_its_hosting(tmp_path, database_url, s3_endpoint):
    nodes = [_node(tmp_path, name, database_url, s3_endpoint) for name in ("a", "b")]
    try:
        a, b = nodes
        on_a = _trained(a, s3_endpoint, "trials")
        on_b = _through(on_a, b)
        short, long = _images(on_a, "short", 3), _images(on_a, "long", 40)
        _run_trial(a, on_a, "short", short)  # it starts the model...
        deadline = time.monotonic() + 60
        while on_a.model("1")["Status"] == "TRAINED":
            assert time.monotonic() < deadline, "the short trial did not start the model"
            time.sleep(0.02)
        _run_trial(b, on_b, "long", long)  # ...and ends long before this one, on whichever node each runs
        _detected_all(_finished(a, on_a, "short"), 3)
        assert on_b.model("1")["Status"] in ("STARTING_HOSTING", "HOSTED")  # the long trial still uses it
        _detected_all(_finished(b, on_b, "long"), 40)
        assert on_a.wait_model("1", timeout=60)["Status"] == "TRAINED"  # the last trial stopped it

        on_b.host("1")  # hosted by the user: a trial uses it and leaves it hosted
        _run_trial(a, on_a, "hosted", short)
        _detected_all(_finished(a, on_a, "hosted"), 3)
        assert on_b.model("1")["Status"] == "HOSTED"
    finally:
        _stop_all(nodes)


def test_a_trial_taken_over_by_another_node_stops_the_model_it_started(tmp_path, database_url, s3_endpoint):
    nodes = [_node(tmp_path, "first", database_url, s3_endpoint)]
    try:
        first = nodes[0]
        kit = _trained(first, s3_endpoint, "takeover")
        _run_trial(first, kit, "long", _images(kit, "long", 60))  # it starts the model
        deadline = time.monotonic() + 120
        while not _trial_status(first, kit, "long")["StatusMessage"].startswith("Detected "):
            assert time.monotonic() < deadline, "the trial did not begin detecting"
            time.sleep(0.05)
        _kill(first)  # mid-trial: the model stays HOSTED, and the trial's job is taken over
        second = _node(tmp_path, "second", database_url, s3_endpoint)
        nodes.append(second)
        taken_over = _through(kit, second)
        _detected_all(_finished(second, taken_over, "long"), 60)
        assert taken_over.wait_model("1", timeout=60)["Status"] == "TRAINED"  # what a trial started, a trial stopped
    finally:
        _stop_all(nodes)


def test_a_split_fleet_runs_a_trial_on_its_worker(tmp_path, database_url, s3_endpoint):
    nodes = [_node(tmp_path, "api", database_url, s3_endpoint, "--role", "api,inference"),
             _node(tmp_path, "worker", database_url, s3_endpoint, "--role", "worker")]
    try:
        api, _ = nodes
        kit = _trained(api, s3_endpoint, "split")  # the worker trains it
        _run_trial(api, kit, "split", _images(kit, "split", 4))
        _detected_all(_finished(api, kit, "split"), 4)
        assert kit.wait_model("1", timeout=60)["Status"] == "TRAINED"  # hosted for the trial, then stopped
    finally:
        _stop_all(nodes)
