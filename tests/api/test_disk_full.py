"""A full disk under the data dir: a training that cannot copy its images ends TRAINING_FAILED saying
why (never TRAINING with no job behind it) and can be deleted; an S3 upload that cannot be stored is
S3's error and leaves no object, visible or partial; an API write is an AWS-style
InternalServerException naming the disk, not waitress's 500 page. The data dir is put on a 20 MB
tmpfs (root only: skipped elsewhere, with the reason)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from emulator.testing import LocalEmulator
from tests.api.datasets_support import jobs_held
from tests.api.models_support import OUTPUT_BUCKET, new_kit

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mounts a tmpfs (Linux only)")

FULL = "disk of the emulator's data directory is full"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mount)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a 20 MB tmpfs for the data dir (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int = 0) -> Path:
    """Take all the space of `disk` but about `leave` bytes; the file that holds it."""
    filler = disk / f"filler-{len(list(disk.glob('filler-*')))}"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError:
        pass
    finally:
        os.close(fd)
    os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def test_a_full_disk_fails_cleanly(small_disk: Path) -> None:
    with LocalEmulator(data_dir=small_disk / "data") as emu:
        lookout = emu.client("lookoutvision", retries={"max_attempts": 1})
        s3 = emu.client("s3", retries={"max_attempts": 1})
        kit = new_kit(lookout, s3, "full")
        kit.stage("train", normals=10, anomalies=0, size=(64, 64))
        kit.stage("test", normals=10, anomalies=10, size=(64, 64), seed=500)

        # Room for CreateModel's own writes (the metadata, the plan locally and in the embedded S3), not for
        # the 30 images training copies.
        filler = fill(small_disk, leave=128 * 1024)
        version = kit.create_model()["ModelVersion"]
        described = kit.wait_model(version, timeout=120)
        assert described["Status"] == "TRAINING_FAILED", described
        assert FULL in described["StatusMessage"] and str(small_disk) not in described["StatusMessage"]
        # Once, on a loaded machine (a CI run beside two benchmarks), the room left was gone by now and the
        # delete was refused as disk-full (cleanly). What used it was not found. This part is about how
        # training fails, not about the delete: free some room, as a user would.
        os.truncate(filler, filler.stat().st_size - 256 * 1024)
        lookout.delete_model(ProjectName="full", ModelVersion=version)

        # No room at all when the job runs: recording the failure may itself have to wait for space.
        with jobs_held(emu):
            version = kit.create_model()["ModelVersion"]
            stuffed = fill(small_disk)
        time.sleep(3)  # the job meets the full disk meanwhile
        stuffed.unlink()
        os.truncate(filler, filler.stat().st_size - 1024 * 1024)  # room for what comes next
        described = kit.wait_model(version, timeout=60)
        assert described["Status"] == "TRAINING_FAILED" and FULL in described["StatusMessage"], described
        lookout.delete_model(ProjectName="full", ModelVersion=version)

        fill(small_disk)
        with pytest.raises(ClientError) as err:
            s3.put_object(Bucket=OUTPUT_BUCKET, Key="big.bin", Body=os.urandom(256 * 1024))
        assert err.value.response["Error"]["Code"] == "InternalError"
        assert FULL in err.value.response["Error"]["Message"]
        with pytest.raises(ClientError) as err:
            s3.head_object(Bucket=OUTPUT_BUCKET, Key="big.bin")
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        assert "big.bin" not in [o["Key"] for o in s3.list_objects_v2(Bucket=OUTPUT_BUCKET).get("Contents", [])]
        assert not list((small_disk / "data").rglob("*.tmp")), "a partial object was left behind"

        if emu.settings.database_url is None:  # the metadata is on this disk too (not with PostgreSQL)
            # SQLite reuses its write-ahead log's space for a while: write until a write needs more.
            for number in range(3000):
                try:
                    lookout.create_project(ProjectName=f"more-{number}")
                except ClientError as error:
                    refused = error.response
                    break
            else:
                pytest.fail("3000 projects were created on a full disk")
            assert (refused["Error"]["Code"], refused["ResponseMetadata"]["HTTPStatusCode"]) == (
                "InternalServerException", 500)
            assert FULL in refused["Error"]["Message"]

        for path in small_disk.glob("filler-*"):
            path.unlink()
        assert filler not in small_disk.iterdir()
        lookout.create_project(ProjectName="after")  # space again: writes work again
        s3.put_object(Bucket=OUTPUT_BUCKET, Key="big.bin", Body=b"now")
