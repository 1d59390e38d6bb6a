"""CreateModel / DescribeModel / ListModels / DeleteModel: training, evaluation output and errors."""
from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.api.datasets_support import error_of, jobs_held
from tests.api.models_support import (
    COLOUR,
    LABEL,
    OUTPUT_BUCKET,
    ModelKit,
    encode,
    new_kit,
    texture,
    trained,
    with_defect,
)


@pytest.fixture
def mkit(lookout: Any, s3: Any, project_name: str) -> ModelKit:
    return new_kit(lookout, s3, project_name)


@pytest.fixture(scope="module")
def classification(lookout: Any, s3: Any):
    return trained("classification", lookout, s3)


@pytest.fixture(scope="module")
def segmentation(lookout: Any, s3: Any):
    return trained("segmentation", lookout, s3)


def _s3_json_lines(s3: Any, location: dict[str, str]) -> list[dict[str, Any]]:
    body = s3.get_object(Bucket=location["Bucket"], Key=location["Key"])["Body"].read().decode()
    return [json.loads(line) for line in body.splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------ happy paths
def test_classification_model_trains_on_an_automatically_split_single_dataset(classification, s3) -> None:
    described = classification.description
    kit = classification.kit
    assert described["ModelVersion"] == "1"
    assert described["ModelArn"].endswith(f":model/{kit.project}/1")
    assert described["Description"] == "shared-test-model"
    assert described["Status"] == "TRAINED" and described["StatusMessage"]
    assert described["OutputConfig"] == {"S3Location": {"Bucket": OUTPUT_BUCKET, "Prefix": f"{kit.project}/out"}}
    assert described["EvaluationEndTimestamp"] >= described["CreationTimestamp"]
    performance = described["Performance"]
    assert set(performance) == {"F1Score", "Recall", "Precision"}
    assert performance["F1Score"] >= 0.8  # the synthetic defects are obvious

    # 20 normal + 10 anomaly split 80/20 per class: 4 normal and 2 anomaly test images.
    manifest = described["EvaluationManifest"]
    # The Prefix is prepended as given, as the service did (no "/" is added after "out").
    assert manifest == {"Bucket": OUTPUT_BUCKET, "Key": f"{kit.project}/outEvaluationManifest-{kit.project}-1.json"}
    lines = _s3_json_lines(s3, manifest)
    assert len(lines) == 6
    assert sorted(line["anomaly-label-metadata"]["class-name"] for line in lines) == ["anomaly"] * 2 + ["normal"] * 4
    for line in lines:
        assert line["source-ref"].startswith("s3://")
        detected = line["anomaly-label-detected-metadata"]
        assert line["anomaly-label-detected"] == (1 if detected["class-name"] == "anomaly" else 0)
        assert 0.0 <= detected["confidence"] <= 1.0
        assert detected["model-arn"] == described["ModelArn"]
        assert detected["project-name"] == kit.project and detected["model-version"] == "1"
        assert detected["human-annotated"] == "no"

    result_location = described["EvaluationResult"]
    assert result_location["Key"] == f"{kit.project}/outEvaluationResult-{kit.project}-1.json"
    result = json.loads(s3.get_object(Bucket=OUTPUT_BUCKET, Key=result_location["Key"])["Body"].read())
    assert result["Version"] == 1
    details = result["EvaluationDetails"]
    assert details["ModelArn"] == described["ModelArn"]
    assert (details["NumberOfTrainingImages"], details["NumberOfTestingImages"]) == (24, 6)
    metrics = result["AggregatedEvaluationResults"]["Metrics"]
    assert metrics["F1Score"] == pytest.approx(performance["F1Score"])
    assert metrics["Precision"] == pytest.approx(performance["Precision"])
    assert metrics["Recall"] == pytest.approx(performance["Recall"])
    assert 0.0 <= metrics["ROCAUC"] <= 1.0 and 0.0 <= metrics["AveragePrecision"] <= 1.0
    assert "PixelAnomalyClassMetrics" not in metrics


def test_segmentation_model_reports_per_label_metrics(segmentation, s3) -> None:
    described = segmentation.description
    assert described["Status"] == "TRAINED"
    result = json.loads(s3.get_object(Bucket=OUTPUT_BUCKET, Key=described["EvaluationResult"]["Key"])["Body"].read())
    assert (result["EvaluationDetails"]["NumberOfTrainingImages"],
            result["EvaluationDetails"]["NumberOfTestingImages"]) == (20, 20)
    [per_label] = result["AggregatedEvaluationResults"]["Metrics"]["PixelAnomalyClassMetrics"]
    assert per_label["ClassName"] == LABEL
    assert set(per_label) == {"Precision", "Recall", "F1Score", "AIOU", "ClassName"}
    assert per_label["AIOU"] > 0.3  # masks land on the squares
    lines = _s3_json_lines(s3, described["EvaluationManifest"])
    assert len(lines) == 20
    anomalies = [line for line in lines if line["anomaly-label-metadata"]["class-name"] == "anomaly"]
    assert len(anomalies) == 10 and all("anomaly-mask-ref" in line for line in anomalies)
    for line in lines:  # the predicted mask of every test image, in the model's output location
        bucket, key = line["anomaly-label-detected-mask-ref"][len("s3://"):].split("/", 1)
        assert bucket == OUTPUT_BUCKET
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read().startswith(b"\x89PNG")


def test_trained_model_keeps_its_own_copy_of_the_images(classification, emulator) -> None:
    from emulator.services.lookups import model_dir

    directory = model_dir(emulator.backend, classification.kit.project, 1)
    assert len(list((directory / "data" / "train").iterdir())) == 24
    assert len(list((directory / "data" / "test").iterdir())) == 6
    assert (directory / "engine").is_dir()


def test_list_models_and_latest(classification, lookout) -> None:
    project = classification.kit.project
    models = lookout.list_models(ProjectName=project)["Models"]
    assert [m["ModelVersion"] for m in models] == ["1"]
    assert models[0]["Status"] == "TRAINED" and "Performance" in models[0]
    latest = lookout.describe_model(ProjectName=project, ModelVersion="latest")["ModelDescription"]
    assert latest["ModelArn"] == classification.description["ModelArn"]


# -------------------------------------------------------------------------- versions, tags, idempotency
def test_versions_count_up_and_are_never_reused(mkit: ModelKit, lookout) -> None:
    mkit.stage_doomed()
    assert mkit.create_model()["ModelVersion"] == "1"
    assert mkit.create_model()["ModelVersion"] == "2"
    assert mkit.wait_model("2")["Status"] == "TRAINING_FAILED"
    assert lookout.delete_model(ProjectName=mkit.project, ModelVersion="2")["ModelArn"].endswith("/2")
    assert mkit.create_model()["ModelVersion"] == "3"
    page = lookout.list_models(ProjectName=mkit.project, MaxResults=1)
    assert [m["ModelVersion"] for m in page["Models"]] == ["1"]
    rest = lookout.list_models(ProjectName=mkit.project, NextToken=page["NextToken"])
    assert [m["ModelVersion"] for m in rest["Models"]] == ["3"] and "NextToken" not in rest


def test_next_token_of_another_listing_is_invalid(mkit: ModelKit, lookout) -> None:
    from emulator.api.pagination import encode_token

    with pytest.raises(ClientError) as err:
        lookout.list_models(ProjectName=mkit.project, NextToken=encode_token("a-project-name"))
    code, _, message = error_of(err)
    assert code == "ValidationException" and "NextToken" in message


def test_create_model_stores_kms_key_and_tags(mkit: ModelKit, lookout) -> None:
    mkit.stage_doomed()
    created = mkit.create_model(KmsKeyId="arn:aws:kms:us-east-1:123456789012:key/abcd", Description="v1.0",
                                Tags=[{"Key": "team", "Value": "vision"}],
                                OutputConfig={"S3Location": {"Bucket": OUTPUT_BUCKET}})
    described = mkit.model(created["ModelVersion"])
    assert described["KmsKeyId"] == "arn:aws:kms:us-east-1:123456789012:key/abcd"
    assert described["Description"] == "v1.0"
    assert described["OutputConfig"] == {"S3Location": {"Bucket": OUTPUT_BUCKET}}
    tags = lookout.list_tags_for_resource(ResourceArn=created["ModelArn"])["Tags"]
    assert tags == [{"Key": "team", "Value": "vision"}]


def test_client_token_makes_create_model_idempotent(mkit: ModelKit) -> None:
    mkit.stage_doomed()
    first = mkit.create_model(ClientToken="create-model-once")
    again = mkit.create_model(ClientToken="create-model-once")
    assert again["ModelVersion"] == first["ModelVersion"] == "1"
    with pytest.raises(ClientError) as err:
        mkit.create_model(ClientToken="create-model-once", Description="different")
    assert error_of(err)[0] == "ConflictException"


# ------------------------------------------------------------------------ CreateModel prerequisites
def _create_error(mkit: ModelKit, client: Any = None, **kwargs: Any) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as err:
        if client is None:
            mkit.create_model(**kwargs)
        else:
            client.create_model(ProjectName=mkit.project, **kwargs)
    return error_of(err)


def test_create_model_needs_a_project(lookout, project_name) -> None:
    with pytest.raises(ClientError) as err:
        lookout.create_model(ProjectName=project_name, OutputConfig={"S3Location": {"Bucket": OUTPUT_BUCKET}})
    assert error_of(err)[:2] == ("ResourceNotFoundException", 404)


def test_create_model_needs_a_train_dataset(mkit: ModelKit) -> None:
    code, status, message = _create_error(mkit)
    assert (code, status) == ("ValidationException", 400)
    assert "no train dataset" in message


def test_create_model_needs_output_config(mkit: ModelKit, lookout_unvalidated) -> None:
    code, _, message = _create_error(mkit, lookout_unvalidated)
    assert code == "ValidationException" and "outputConfig" in message


@pytest.mark.parametrize("normals, anomalies, expected", [
    (19, 10, "at least 20 images labeled normal (it has 19)"),
    (20, 9, "at least 10 images labeled anomaly (it has 9)"),
])
def test_single_dataset_minimum_counts(mkit: ModelKit, normals: int, anomalies: int, expected: str) -> None:
    mkit.stage("train", normals=normals, anomalies=anomalies, size=(64, 64))
    code, _, message = _create_error(mkit)
    assert code == "ValidationException"
    assert expected in message and "single-dataset project" in message


def test_separate_test_dataset_minimum_counts(mkit: ModelKit) -> None:
    mkit.stage("train", normals=10, anomalies=0, size=(64, 64))
    mkit.stage("test", normals=10, anomalies=9, seed=50, size=(64, 64))
    code, _, message = _create_error(mkit)
    assert code == "ValidationException"
    assert "test dataset" in message and "at least 10 images labeled anomaly (it has 9)" in message


def test_segmentation_needs_enough_images_per_anomaly_label(mkit: ModelKit) -> None:
    lines = mkit.stage("train", normals=20, anomalies=19, masked=True, size=(64, 64))
    assert sum("anomaly-mask-ref" in line for line in lines) == 19
    code, _, message = _create_error(mkit)
    assert code == "ValidationException"
    assert f"only the label {LABEL} (it has 19)" in message


def test_an_anomaly_label_has_one_colour(mkit: ModelKit) -> None:
    lines = mkit.stage("train", normals=20, anomalies=20, masked=True, size=(64, 64))
    recoloured = json.loads(json.dumps(lines[25]))
    recoloured["anomaly-mask-ref-metadata"]["internal-color-map"]["1"]["hex-color"] = "#FF0000"
    assert mkit.update([recoloured])["Status"] == "UPDATE_COMPLETE"
    code, _, message = _create_error(mkit)
    assert code == "ValidationException"
    assert f"{LABEL} has the colour {COLOUR}" in message and "#FF0000" in message


def test_create_model_right_after_create_dataset_waits_for_the_import_then_trains(mkit: ModelKit, emulator) -> None:
    lines = mkit.upload("train", normals=20, anomalies=10, size=(64, 64))
    with jobs_held(emulator):  # the import can't finish before CreateModel, as on a busy service
        mkit.create("train", lines, wait=False)
        created = mkit.create_model()
        assert created["Status"] == "TRAINING"
        assert "waiting for the train dataset (CREATE_IN_PROGRESS)" in created["StatusMessage"]
        assert mkit.model(created["ModelVersion"])["Status"] == "TRAINING"
    described = mkit.wait_model(created["ModelVersion"])
    assert described["Status"] == "TRAINED", described["StatusMessage"]
    assert set(described["Performance"]) == {"F1Score", "Recall", "Precision"}


@pytest.mark.parametrize("case", ["import fails", "too few images"])
def test_a_model_waiting_for_its_datasets_fails_with_the_reason(mkit: ModelKit, emulator, case: str) -> None:
    if case == "import fails":
        lines = [{"source-ref": f"s3://{OUTPUT_BUCKET}/{mkit.project}/missing.png"}]
    else:
        lines = mkit.upload("train", normals=3, anomalies=1, size=(64, 64))
    with jobs_held(emulator):
        mkit.create("train", lines, wait=False)
        version = mkit.create_model()["ModelVersion"]
    described = mkit.wait_model(version)
    assert described["Status"] == "TRAINING_FAILED" and "Performance" not in described
    message = described["StatusMessage"]
    if case == "import fails":
        assert "the train dataset could not be imported" in message and "missing.png" in message
        assert "CreateModel again" in message
    else:
        assert "Not enough labeled images" in message and "(it has 3)" in message


def test_create_model_on_a_failed_dataset(mkit: ModelKit) -> None:
    described = mkit.create("train", [{"source-ref": f"s3://{OUTPUT_BUCKET}/{mkit.project}/missing.png"}])
    assert described["Status"] == "CREATE_FAILED"
    code, _, message = _create_error(mkit)
    assert code == "ValidationException" and "CREATE_FAILED" in message


# ------------------------------------------------------------------------------- TRAINING_FAILED
def _failed_message(mkit: ModelKit) -> str:
    described = mkit.wait_model(mkit.create_model()["ModelVersion"])
    assert described["Status"] == "TRAINING_FAILED"
    assert "Performance" not in described
    return described["StatusMessage"]


def test_training_fails_on_a_missing_image(mkit: ModelKit) -> None:
    lines = mkit.stage("train", normals=20, anomalies=10, size=(64, 64))
    bucket, key = mkit.object(lines[3]["source-ref"])
    mkit.s3.delete_object(Bucket=bucket, Key=key)
    message = _failed_message(mkit)
    assert lines[3]["source-ref"] in message and "does not exist" in message


def test_training_fails_on_an_unreadable_image(mkit: ModelKit) -> None:
    lines = mkit.stage("train", normals=20, anomalies=10, size=(64, 64))
    mkit.replace(lines[5]["source-ref"], b"this is not an image")
    message = _failed_message(mkit)
    assert lines[5]["source-ref"] in message and "PNG or JPEG" in message


def test_training_fails_on_an_image_of_another_size(mkit: ModelKit) -> None:
    lines = mkit.stage("train", normals=20, anomalies=10, size=(64, 64))
    mkit.replace(lines[7]["source-ref"], encode(texture(7, (80, 64))))
    message = _failed_message(mkit)
    assert lines[7]["source-ref"] in message and "80x64" in message and "same dimensions" in message


def test_training_fails_on_a_mask_with_undeclared_colours(mkit: ModelKit) -> None:
    lines = mkit.stage("train", normals=20, anomalies=20, masked=True, size=(64, 64))
    _, mask = with_defect(3, (64, 64))
    mask[mask[..., 1] == 0xA0] = (255, 0, 0)
    mkit.replace(lines[22]["anomaly-mask-ref"], encode(mask))
    message = _failed_message(mkit)
    assert lines[22]["anomaly-mask-ref"] in message and "#FF0000" in message and COLOUR in message


def test_training_fails_on_a_mask_that_is_not_png(mkit: ModelKit) -> None:
    lines = mkit.stage("train", normals=20, anomalies=20, masked=True, size=(64, 64))
    mkit.replace(lines[20]["anomaly-mask-ref"], encode(with_defect(3, (64, 64))[1], "JPEG"))
    message = _failed_message(mkit)
    assert lines[20]["anomaly-mask-ref"] in message and "must be PNG" in message


# ------------------------------------------------------------------------ Describe / Delete errors
@pytest.mark.parametrize("call", ["describe_model", "delete_model"])
def test_unknown_model_version_is_not_found(mkit: ModelKit, lookout, call: str) -> None:
    with pytest.raises(ClientError) as err:
        getattr(lookout, call)(ProjectName=mkit.project, ModelVersion="7")
    code, status, message = error_of(err)
    assert (code, status) == ("ResourceNotFoundException", 404)
    assert err.value.response["ResourceType"] == "MODEL" and "7" in message


def test_latest_without_models_is_not_found(mkit: ModelKit, lookout) -> None:
    with pytest.raises(ClientError) as err:
        lookout.describe_model(ProjectName=mkit.project, ModelVersion="latest")
    assert error_of(err)[0] == "ResourceNotFoundException"


def test_model_version_is_validated_server_side(mkit: ModelKit, lookout_unvalidated) -> None:
    with pytest.raises(ClientError) as err:
        lookout_unvalidated.delete_model(ProjectName=mkit.project, ModelVersion="latest")
    code, _, message = error_of(err)
    assert code == "ValidationException" and "modelVersion" in message


def test_a_training_model_cannot_be_deleted(mkit: ModelKit, lookout, emulator) -> None:
    mkit.stage_doomed()
    with jobs_held(emulator):
        version = mkit.create_model()["ModelVersion"]
        with pytest.raises(ClientError) as err:
            lookout.delete_model(ProjectName=mkit.project, ModelVersion=version)
    code, status, message = error_of(err)
    assert (code, status) == ("ConflictException", 409) and "TRAINING" in message
    assert mkit.wait_model(version)["Status"] == "TRAINING_FAILED"


def test_project_with_models_cannot_be_deleted(mkit: ModelKit, lookout) -> None:
    mkit.stage_doomed()
    version = mkit.create_model()["ModelVersion"]
    mkit.wait_model(version)
    lookout.delete_dataset(ProjectName=mkit.project, DatasetType="train")
    with pytest.raises(ClientError) as err:
        lookout.delete_project(ProjectName=mkit.project)
    assert error_of(err)[0] == "ConflictException"
    lookout.delete_model(ProjectName=mkit.project, ModelVersion=version)
    lookout.delete_project(ProjectName=mkit.project)


def test_deleted_model_is_gone_with_its_files_and_tags(mkit: ModelKit, lookout, emulator) -> None:
    from emulator.services.lookups import model_dir

    mkit.stage_doomed()
    created = mkit.create_model(Tags=[{"Key": "k", "Value": "v"}])
    mkit.wait_model("1")
    assert model_dir(emulator.backend, mkit.project, 1).exists()
    lookout.delete_model(ProjectName=mkit.project, ModelVersion="1")
    assert lookout.list_models(ProjectName=mkit.project)["Models"] == []
    assert not model_dir(emulator.backend, mkit.project, 1).exists()
    with pytest.raises(ClientError):
        lookout.list_tags_for_resource(ResourceArn=created["ModelArn"])

