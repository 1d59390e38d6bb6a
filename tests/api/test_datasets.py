"""CreateDataset / DescribeDataset / DeleteDataset: happy paths, manifest formats and request errors."""
from __future__ import annotations

import json
import uuid

import pytest
from botocore.exceptions import ClientError

from emulator.services.datasets import dataset_summaries, list_entries
from emulator.services.lookups import require_dataset
from tests.api.datasets_support import BUCKET, DatasetKit, error_of, image_bytes, labelled, mask_bytes, segmented


def test_empty_dataset_is_created_synchronously(kit: DatasetKit) -> None:
    created = kit.create("train", wait=False)
    assert created["DatasetType"] == "train"
    assert created["Status"] == "CREATE_COMPLETE"
    described = kit.describe("train")
    assert described["ProjectName"] == kit.project
    assert described["ImageStats"] == {"Total": 0, "Labeled": 0, "Normal": 0, "Anomaly": 0}
    assert described["CreationTimestamp"] <= described["LastUpdatedTimestamp"]
    assert kit.entries() == []


def test_classification_manifest_reads_the_class_from_metadata(kit: DatasetKit) -> None:
    refs = kit.images(6)
    lines = [
        labelled(refs[0], "normal"),
        labelled(refs[1], "anomaly"),
        # AWS's workshop notebook: attribute "auto-label", value 1 for *normal* images.
        labelled(refs[2], "normal", attribute="auto-label", value=1),
        labelled(refs[3], "anomaly", attribute="auto-label", value=0),
        labelled(refs[4], "scratched"),  # any other class name: imported unlabelled
        {"source-ref": refs[5]},  # no label at all
    ]
    described = kit.create("train", lines)
    assert described["Status"] == "CREATE_COMPLETE", described.get("StatusMessage")
    assert "6 images" in described["StatusMessage"]
    assert described["ImageStats"] == {"Total": 6, "Labeled": 4, "Normal": 2, "Anomaly": 2}
    listed = kit.entries()
    assert [entry["source-ref"] for entry in listed] == refs
    # The label attribute is rewritten as LFV's output manifest has it: 1 anomaly, 0 normal.
    assert listed[2]["auto-label"] == 0 and listed[3]["auto-label"] == 1
    assert listed[0]["anomaly-label-metadata"]["job-name"] == "labeling-job/test"  # other fields kept


def test_create_returns_in_progress_then_completes(kit: DatasetKit) -> None:
    ref = kit.images(1)[0]
    metadata = kit.create("test", [labelled(ref, "normal")], wait=False)
    assert metadata["Status"] == "CREATE_IN_PROGRESS"
    assert kit.wait("test")["Status"] == "CREATE_COMPLETE"


def test_segmentation_manifest_in_the_documented_format(kit: DatasetKit, emulator) -> None:
    image = kit.put("seg.png", image_bytes())
    mask = kit.put("seg-mask.png", mask_bytes())
    normal = kit.put("ok.jpg", image_bytes(fmt="JPEG"))
    described = kit.create("train", [segmented(image, mask, {"scratch": "#2ca02c", "dent": "#1f77b4"}),
                                     labelled(normal, "normal")])
    assert described["Status"] == "CREATE_COMPLETE", described.get("StatusMessage")
    assert described["ImageStats"] == {"Total": 2, "Labeled": 2, "Normal": 1, "Anomaly": 1}
    entries = list_entries(emulator.backend, kit.project, "train")
    assert entries[0].label == "anomaly" and entries[0].mask_ref == mask
    assert entries[0].label_colors == {"scratch": "#2CA02C", "dent": "#1F77B4"}  # BACKGROUND left out
    assert entries[1].label == "normal" and entries[1].mask_ref is None and entries[1].label_colors == {}
    assert entries[0].line == kit.entries()[0]
    assert entries[0].created_at > 0


def test_segmentation_manifest_like_the_cookies_template(kit: DatasetKit, emulator) -> None:
    """The getting-started template: no BACKGROUND entry, the anomaly label at key "0", a palette mask."""
    image = kit.put("anomaly-1.jpg", image_bytes((96, 128), fmt="JPEG"))
    palette_mask = mask_bytes((96, 128), color=(35, 164, 54))
    mask = kit.put("anomaly-1-mask.png", palette_mask)
    line = {"source-ref": image, "anomaly-label": 1,
            "anomaly-label-metadata": {"job-name": "anomaly-label", "class-name": "anomaly",
                                       "human-annotated": "yes", "type": "groundtruth/image-classification"},
            "anomaly-mask-ref-metadata": {"internal-color-map": {"0": {"class-name": "cracked",
                                                                       "hex-color": "#23A436"}},
                                          "type": "groundtruth/semantic-segmentation"},
            "anomaly-mask-ref": mask}
    assert kit.create("train", [line])["Status"] == "CREATE_COMPLETE"
    assert list_entries(emulator.backend, kit.project, "train")[0].label_colors == {"cracked": "#23A436"}


def test_a_project_has_one_train_and_one_test_dataset(kit: DatasetKit, emulator) -> None:
    kit.create("train")
    kit.create("test")
    for dataset_type in ("train", "test"):
        with pytest.raises(ClientError) as err:
            kit.create(dataset_type)
        code, status, message = error_of(err)
        assert (code, status) == ("ConflictException", 409)
        assert dataset_type in message and kit.project in message
        assert err.value.response["ResourceType"] == "DATASET"
    summaries = dataset_summaries(emulator.backend, kit.project)
    assert [s["DatasetType"] for s in summaries] == ["train", "test"]
    assert all(s["Status"] == "CREATE_COMPLETE" and s["CreationTimestamp"] > 0 for s in summaries)
    assert require_dataset(emulator.backend, kit.project, "test").status == "CREATE_COMPLETE"


def test_create_in_a_missing_project(lookout, project_name: str) -> None:
    with pytest.raises(ClientError) as err:
        lookout.create_dataset(ProjectName=project_name, DatasetType="train")
    code, status, message = error_of(err)
    assert (code, status) == ("ResourceNotFoundException", 404)
    assert project_name in message
    assert err.value.response["ResourceType"] == "PROJECT"


@pytest.mark.parametrize("call", ["describe_dataset", "list_dataset_entries", "delete_dataset",
                                  "update_dataset_entries"])
def test_operations_on_a_missing_dataset(kit: DatasetKit, call: str) -> None:
    kit.create("train")
    kwargs = {"Changes": b'{"source-ref": "s3://b/k.png"}'} if call == "update_dataset_entries" else {}
    with pytest.raises(ClientError) as err:
        getattr(kit.lookout, call)(ProjectName=kit.project, DatasetType="test", **kwargs)
    code, status, message = error_of(err)
    assert (code, status) == ("ResourceNotFoundException", 404)
    assert "test" in message and kit.project in message
    assert err.value.response["ResourceType"] == "DATASET"


def test_delete_dataset_removes_its_entries(kit: DatasetKit) -> None:
    refs = kit.images(2)
    kit.create("train", [labelled(refs[0], "normal"), labelled(refs[1], "anomaly")])
    kit.create("test", [labelled(refs[0], "normal")])
    response = kit.lookout.delete_dataset(ProjectName=kit.project, DatasetType="train")
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 202
    with pytest.raises(ClientError) as err:
        kit.describe("train")
    assert error_of(err)[0] == "ResourceNotFoundException"
    assert kit.describe("test")["ImageStats"]["Total"] == 1  # the other dataset is untouched
    kit.create("train")  # the type is free again, and starts empty
    assert kit.describe("train")["ImageStats"]["Total"] == 0


def test_a_project_with_datasets_cannot_be_deleted(kit: DatasetKit) -> None:
    kit.create("train", [labelled(kit.images(1)[0], "normal")])
    with pytest.raises(ClientError) as err:
        kit.lookout.delete_project(ProjectName=kit.project)
    assert error_of(err)[0] == "ConflictException"
    assert kit.describe("train")["ImageStats"]["Total"] == 1  # nothing was deleted
    kit.lookout.delete_dataset(ProjectName=kit.project, DatasetType="train")
    kit.lookout.delete_project(ProjectName=kit.project)
    kit.lookout.create_project(ProjectName=kit.project)
    with pytest.raises(ClientError) as err:
        kit.describe("train")
    assert error_of(err)[0] == "ResourceNotFoundException"


def test_dataset_source_without_a_manifest_location(kit: DatasetKit) -> None:
    with pytest.raises(ClientError) as err:
        kit.lookout.create_dataset(ProjectName=kit.project, DatasetType="train",
                                   DatasetSource={"GroundTruthManifest": {}})
    code, status, message = error_of(err)
    assert (code, status) == ("ValidationException", 400)
    assert "GroundTruthManifest.S3Object" in message


def test_server_validates_dataset_type_and_manifest_location(kit: DatasetKit, lookout_unvalidated) -> None:
    with pytest.raises(ClientError) as err:
        lookout_unvalidated.create_dataset(ProjectName=kit.project, DatasetType="validation")
    code, _, message = error_of(err)
    assert code == "ValidationException" and "datasetType" in message
    with pytest.raises(ClientError) as err:
        lookout_unvalidated.create_dataset(ProjectName=kit.project, DatasetType="train",
                                           DatasetSource={"GroundTruthManifest": {"S3Object": {"Bucket": BUCKET}}})
    code, _, message = error_of(err)
    assert code == "ValidationException" and "key" in message.lower()


def test_create_dataset_client_token_is_idempotent(kit: DatasetKit) -> None:
    token = uuid.uuid4().hex
    first = kit.lookout.create_dataset(ProjectName=kit.project, DatasetType="train", ClientToken=token)
    again = kit.lookout.create_dataset(ProjectName=kit.project, DatasetType="train", ClientToken=token)
    assert again["DatasetMetadata"] == first["DatasetMetadata"]


def test_list_entries_returns_stored_json_lines(kit: DatasetKit) -> None:
    ref = kit.images(1)[0]
    kit.create("train", [labelled(ref, "anomaly")])
    raw = kit.lookout.list_dataset_entries(ProjectName=kit.project, DatasetType="train")["DatasetEntries"]
    assert len(raw) == 1 and raw[0].startswith("{") and "\n" not in raw[0]
    assert json.loads(raw[0])["source-ref"] == ref
