"""Background jobs leave no file descriptors behind (each job runs on a fresh thread; a connection
tied to its thread once stayed open after it ended: two descriptors per job)."""
from __future__ import annotations

import os

import pytest

from tests.api.datasets_support import labelled


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to count file descriptors")
def test_dataset_jobs_leak_no_file_descriptors(kit):
    image = kit.images(1)[0]
    kit.create("train", [labelled(image, "normal")])
    for _ in range(3):  # warm up: pools fill to their working size
        kit.lookout.delete_dataset(ProjectName=kit.project, DatasetType="train")
        kit.create("train", [labelled(image, "normal")])
    before = open_fds()
    for _ in range(40):
        kit.lookout.delete_dataset(ProjectName=kit.project, DatasetType="train")
        assert kit.create("train", [labelled(image, "normal")])["Status"] == "CREATE_COMPLETE"
    assert open_fds() - before < 8, (before, open_fds())
