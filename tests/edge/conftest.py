"""Fixtures of the edge agent tests: models packaged through the API, copied to a components folder
as a user copies them from S3, and a `lookout-emulator edge-agent` process serving them."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.models_support import Trained, trained
from tests.edge.edge_support import PACKAGES, AgentProcess, copy_component, package


@pytest.fixture(scope="session")
def models(lookout: Any, s3: Any) -> dict[str, Trained]:
    """The session's trained classification and segmentation models (shared with tests/api)."""
    return {kind: trained(kind, lookout, s3) for kind in ("classification", "segmentation")}


@pytest.fixture(scope="session")
def components_dir(models: dict[str, Trained], s3: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A components folder holding the PACKAGES, packaged by the API and copied from its S3 output."""
    directory = tmp_path_factory.mktemp("components")
    for component, versions in PACKAGES.items():
        for kind, version in versions:
            package(models[kind], component, version)
        copy_component(s3, component, directory)
    return directory


@pytest.fixture(scope="module")
def agent(components_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """An agent on a temporary socket over the session's components."""
    with AgentProcess(components_dir, tmp_path_factory.mktemp("agent") / "agent.sock") as process:
        yield process
    assert not process.socket_path.exists(), "the agent left its socket behind"
