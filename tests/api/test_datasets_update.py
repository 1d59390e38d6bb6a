"""UpdateDatasetEntries: add and replace, rollback on failure, conflicts, and resuming after a crash."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from emulator.services.datasets import add_entries, remove_entries
from emulator.testing import TEST_CREDENTIALS, LocalEmulator
from tests.api.core_support import sqlite_file_only
from tests.api.datasets_support import (
    BUCKET,
    OTHER_BUCKET,
    DatasetKit,
    error_of,
    image_bytes,
    jobs_held,
    labelled,
    manifest_text,
)


def test_update_adds_new_entries_and_replaces_existing_ones(kit: DatasetKit) -> None:
    refs = kit.images(3)
    kit.create("train", [labelled(refs[0], "normal"), labelled(refs[1], "normal")])
    before = kit.lookout.describe_dataset(ProjectName=kit.project, DatasetType="train")["DatasetDescription"]
    described = kit.update([labelled(refs[1], "anomaly"), labelled(refs[2], "anomaly")])
    assert described["Status"] == "UPDATE_COMPLETE"
    assert described["StatusMessage"] == "Added 1 images and replaced 1."
    assert described["ImageStats"] == {"Total": 3, "Labeled": 3, "Normal": 1, "Anomaly": 2}
    assert described["LastUpdatedTimestamp"] > before["LastUpdatedTimestamp"]
    entries = kit.entries()
    assert [e["source-ref"] for e in entries] == refs  # the replaced entry keeps its place
    assert entries[1]["anomaly-label-metadata"]["class-name"] == "anomaly"


def test_replacing_an_entry_drops_annotations_missing_from_the_new_line(kit: DatasetKit) -> None:
    ref = kit.images(1)[0]
    kit.create("train", [labelled(ref, "anomaly")])
    described = kit.update([{"source-ref": ref}])
    assert described["ImageStats"] == {"Total": 1, "Labeled": 0, "Normal": 0, "Anomaly": 0}
    assert kit.entries() == [{"source-ref": ref}]


def test_update_of_an_empty_dataset(kit: DatasetKit) -> None:
    kit.create("test")
    refs = kit.images(2)
    described = kit.update([labelled(refs[0], "normal"), labelled(refs[1], "anomaly")], dataset_type="test")
    assert described["Status"] == "UPDATE_COMPLETE"
    assert described["ImageStats"]["Total"] == 2


def test_remove_entries_for_the_console(kit: DatasetKit, emulator) -> None:
    refs = kit.images(3)
    kit.create("train", [labelled(refs[0], "normal"), labelled(refs[1], "anomaly"), labelled(refs[2], "normal")])
    assert remove_entries(emulator.backend, kit.project, "train", [refs[1], refs[1] + ".unknown"]) == 1
    described = kit.describe()
    assert described["ImageStats"] == {"Total": 2, "Labeled": 2, "Normal": 2, "Anomaly": 0}
    assert described["StatusMessage"] == "Removed 1 images."
    assert [entry["source-ref"] for entry in kit.entries()] == [refs[0], refs[2]]


@pytest.mark.parametrize(("bad_line", "reason"), [
    (lambda kit: labelled(f"s3://{BUCKET}/{kit.prefix}missing.png", "normal"), "does not exist"),
    (lambda kit: labelled(kit.put("big.png", image_bytes((80, 80))), "normal"), "same dimensions"),
    (lambda kit: labelled(kit.put("x.png", image_bytes(), bucket=OTHER_BUCKET), "normal"), "one bucket"),
])
def test_a_failed_update_leaves_the_dataset_exactly_as_it_was(kit: DatasetKit, bad_line, reason: str) -> None:
    refs = kit.images(3)
    kit.create("train", [labelled(refs[0], "normal"), labelled(refs[1], "anomaly")])
    before = kit.entries()
    changes = [labelled(refs[0], "anomaly"), labelled(refs[2], "normal"), bad_line(kit)]
    described = kit.update(changes)
    assert described["Status"] == "UPDATE_FAILED_ROLLBACK_COMPLETE"
    assert "line 3:" in described["StatusMessage"] and reason in described["StatusMessage"]
    assert "unchanged" in described["StatusMessage"]
    assert described["ImageStats"] == {"Total": 2, "Labeled": 2, "Normal": 1, "Anomaly": 1}
    assert kit.entries() == before
    # The dataset stays usable: a good update goes through afterwards.
    assert kit.update(changes[:2])["Status"] == "UPDATE_COMPLETE"


@pytest.mark.parametrize(("changes", "reason"), [
    (b'{"source-ref": "s3://b/a.png"}\n{oops}', "line 2: not valid JSON"),
    (b"\n\n", "no JSON lines"),
    (b'{"source-ref": "s3://b/a.png"}\n{"source-ref": "s3://b/a.png"}', "already appears on line 1"),
    (b'["s3://b/a.png"]', "must be an object"),
    (b'{"source-ref": "images/a.png"}', "not an S3 URI"),
])
def test_changes_that_are_not_json_lines_are_rejected_at_once(kit: DatasetKit, changes: bytes, reason: str) -> None:
    kit.create("train")
    with pytest.raises(ClientError) as err:
        kit.lookout.update_dataset_entries(ProjectName=kit.project, DatasetType="train", Changes=changes)
    code, status, message = error_of(err)
    assert (code, status) == ("ValidationException", 400)
    assert reason in message
    assert kit.describe()["Status"] == "CREATE_COMPLETE"


def test_datasets_in_progress_reject_updates_and_deletion(kit: DatasetKit, emulator) -> None:
    refs = kit.images(2)
    kit.create("test")
    with jobs_held(emulator):
        assert kit.create("train", [labelled(refs[0], "normal")], wait=False)["Status"] == "CREATE_IN_PROGRESS"
        assert add_entries(emulator.backend, kit.project, "test", [labelled(refs[1], "anomaly")]) == \
            "UPDATE_IN_PROGRESS"
        for dataset_type, status in (("train", "CREATE_IN_PROGRESS"), ("test", "UPDATE_IN_PROGRESS")):
            assert kit.describe(dataset_type)["Status"] == status
            with pytest.raises(ClientError) as err:
                kit.lookout.update_dataset_entries(ProjectName=kit.project, DatasetType=dataset_type,
                                                   Changes=manifest_text([labelled(refs[0], "normal")]))
            code, http, message = error_of(err)
            assert (code, http) == ("ConflictException", 409) and status in message
            with pytest.raises(ClientError) as err:
                kit.lookout.delete_dataset(ProjectName=kit.project, DatasetType=dataset_type)
            assert error_of(err)[0] == "ConflictException"
    assert kit.wait("train")["Status"] == "CREATE_COMPLETE"
    assert kit.wait("test")["ImageStats"]["Anomaly"] == 1


@sqlite_file_only
def test_an_interrupted_import_and_update_are_finished_or_failed_on_restart(
        emulator, s3, buckets, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The crash state is a copy of the database taken while both jobs were in progress, which is what
    kill -9 leaves behind. These servers use the session server as their S3 (moto's S3 is per process)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", TEST_CREDENTIALS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_CREDENTIALS["aws_secret_access_key"])
    crashed_dir = tmp_path / "crashed"
    crashed_dir.mkdir()
    project = f"resumed-{tmp_path.name[-12:]}"
    with LocalEmulator(data_dir=tmp_path / "first", s3_endpoint_url=emulator.endpoint_url) as first:
        kit = DatasetKit(first.client(), s3, project)
        kit.lookout.create_project(ProjectName=project)
        refs = kit.images(3)
        kit.create("test")
        with jobs_held(first):
            kit.create("train", [labelled(refs[0], "normal"), labelled(refs[1], "anomaly")], wait=False)
            kit.lookout.update_dataset_entries(ProjectName=project, DatasetType="test",
                                               Changes=manifest_text([labelled(refs[2], "normal")]))
            with sqlite3.connect(tmp_path / "first" / "metadata.sqlite3") as live, \
                    sqlite3.connect(crashed_dir / "metadata.sqlite3") as copy:
                live.backup(copy)
    s3.delete_object(Bucket=BUCKET, Key=f"{kit.prefix}img-2.png")  # the update can no longer succeed
    with LocalEmulator(data_dir=crashed_dir, s3_endpoint_url=emulator.endpoint_url) as restarted:
        kit.lookout = restarted.client()
        train = kit.wait("train")
        assert train["Status"] == "CREATE_COMPLETE"
        assert train["ImageStats"] == {"Total": 2, "Labeled": 2, "Normal": 1, "Anomaly": 1}
        test = kit.wait("test")
        assert test["Status"] == "UPDATE_FAILED_ROLLBACK_COMPLETE"
        assert "line 1:" in test["StatusMessage"] and "img-2.png" in test["StatusMessage"]
        assert test["ImageStats"]["Total"] == 0
