"""The server's --backbone setting reaches training, and a torchvision backbone never downloads."""
from __future__ import annotations

import uuid

import pytest

from emulator.testing import LocalEmulator
from tests.api.models_support import new_kit


@pytest.fixture
def resnet_server(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("LOOKOUT_BACKBONE_WEIGHTS", raising=False)
    with LocalEmulator(backbone="resnet18") as emu:
        yield emu


def test_torchvision_backbone_without_a_weights_file_fails_training_with_the_fix(resnet_server):
    kit = new_kit(resnet_server.client("lookoutvision"), resnet_server.client("s3"), f"bb-{uuid.uuid4().hex[:8]}")
    kit.stage("train", normals=20, anomalies=10, size=(64, 64))
    version = kit.create_model()["ModelVersion"]
    described = kit.wait_model(version)
    assert described["Status"] == "TRAINING_FAILED"
    assert "LOOKOUT_BACKBONE_WEIGHTS" in described["StatusMessage"]


def test_the_cli_refuses_an_unknown_backbone(capsys):
    from emulator.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["serve", "--backbone", "vgg16"])
    assert exited.value.code == 2
    assert "'vgg16' is not one of" in capsys.readouterr().err
