"""The awslabs `lookoutvision` SDK (PyPI 0.1.10), unchanged, through its whole flow against the emulator.

The SDK makes its own boto3 clients with no endpoint argument, so the `lookoutvision_emulator`
fixture points the AWS_* environment at the session's server, as a user would. It reads the
working directory's ``good/`` and ``bad/`` folders, uploads them, writes manifests, creates the
datasets, trains, hosts, predicts (one image, a local folder, an S3 prefix), reads the metrics and
stops the model. Its polling loops sleep 5 to 60 seconds between calls; only those pauses are
shortened here (the SDK's module gets a `time` whose sleep is short), nothing else of it is touched.
"""
from __future__ import annotations

import json
import os
import time
import types
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.workflow.synthetic import write_folder_layout

os.environ.setdefault("MPLBACKEND", "Agg")  # the SDK's metrics module imports pyplot; no display here
sdk = pytest.importorskip("lookoutvision.lookoutvision",
                          reason="the awslabs SDK is not installed: pip install -e '.[test]' installs it")
from lookoutvision.image import Image  # noqa: E402
from lookoutvision.manifest import Manifest  # noqa: E402
from lookoutvision.metrics import Metrics  # noqa: E402

BUCKET = "lookoutvision-sdk-tests"
POLL_SECONDS = 0.2


@pytest.fixture
def fast_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's wait loops poll every 0.2 s instead of every 5-60 s."""
    monkeypatch.setattr(sdk, "time", types.SimpleNamespace(sleep=lambda _: time.sleep(POLL_SECONDS)))


@pytest.mark.slow
def test_the_sdk_flow_from_local_folders_to_a_stopped_model(lookoutvision_emulator, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch, fast_polling) -> None:
    s3 = lookoutvision_emulator.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    # 20 normal and 20 anomalous images: the SDK's split gives 10 + 10 of each to training and validation,
    # the minimum of a project with separate datasets.
    write_folder_layout(tmp_path, {"good": 20, "bad": 20, "extra": 4})
    monkeypatch.chdir(tmp_path)  # upload_from_local reads the working directory
    # Named as the SDK's k-fold training names the project of fold 0, so that its k-fold summary can read
    # this model's evaluation result below.
    base = f"sdk-{uuid.uuid4().hex[:8]}"
    project, prefix = f"{base}_0", f"{base}/"

    uploaded = Image().upload_from_local(bucket=BUCKET, s3_path=prefix, train_and_test=True)
    assert set(uploaded) == {"train", "test"}
    manifests = Manifest(bucket=BUCKET, s3_path=prefix, datasets=["training", "validation"]).push_manifests()
    assert set(manifests) == {"training", "validation"}

    lv = sdk.LookoutForVision(project_name=project)
    assert lv.create_project().endswith(f":project/{project}")
    datasets = lv.create_datasets(manifests, wait=True)
    assert {key: d["Status"] for key, d in datasets.items()} == {"training": "CREATE_COMPLETE",
                                                                 "validation": "CREATE_COMPLETE"}
    assert all(d["StatusMessage"] for d in datasets.values())

    fitted = lv.fit(output_bucket=BUCKET, model_prefix=f"{prefix}k_fold_", wait=True)
    assert fitted["status"] == "Success!"
    assert fitted["train_datasets"]["ImageStats"] == {"Total": 20, "Labeled": 20, "Normal": 10, "Anomaly": 10}
    assert fitted["test_datasets"]["ImageStats"] == {"Total": 20, "Labeled": 20, "Normal": 10, "Anomaly": 10}
    assert fitted["model"]["Status"] == "TRAINING" and fitted["model"]["StatusMessage"]

    deployed = lv.deploy(min_inf_units=1, model_version="1", wait=True)
    assert deployed["status"] == "HOSTED" and deployed["model"]["MinInferenceUnits"] == 1

    # The verdicts are the engine's business (tests/engine); here, every path of the SDK gets the same answer.
    one = lv.predict(local_file=str(tmp_path / "extra" / "extra-1.jpg"))
    assert one["Source"] == {"Type": "direct"} and isinstance(one["IsAnomalous"], bool) and 0 <= one["Confidence"] <= 1
    s3.upload_file(str(tmp_path / "extra" / "extra-1.jpg"), BUCKET, "single/extra-1.jpg")
    assert lv.predict(bucket=BUCKET, key="single/extra-1.jpg") == one

    local = lv.batch_predict(local_path=str(tmp_path / "extra"))
    assert local["status"] == "Success!" and len(local["predicted_result"]) == 4
    # The SDK predicts the files in the order os.listdir gives them.
    by_name = dict(zip(os.listdir(tmp_path / "extra"), local["predicted_result"], strict=True))
    assert by_name["extra-1.jpg"] == one

    for path in sorted((tmp_path / "extra").iterdir()):
        s3.upload_file(str(path), BUCKET, f"incoming/{path.name}")
    batch = lv.batch_predict(input_bucket=BUCKET, input_prefix="incoming/", output_bucket=BUCKET,
                             output_prefix="predictions/")
    assert batch == {"status": "Success!", "predicted_result": f"s3://{BUCKET}/predictions/"}
    written = s3.list_objects_v2(Bucket=BUCKET, Prefix="predictions/")["Contents"]
    results = {o["Key"]: json.loads(s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()) for o in written}
    assert sorted(results) == [f"predictions/{p.name}.json" for p in sorted((tmp_path / "extra").iterdir())]
    assert results == {f"predictions/{name}.json": result for name, result in by_name.items()}

    metrics = Metrics(project)
    described = metrics.describe_model("1")
    assert described.loc["F1Score", "Performance"] == _model(lookoutvision_emulator, project)["Performance"]["F1Score"]
    assert len(metrics.describe_models()) == 3  # one row per metric of the one model
    metrics.compare_models()  # draws the bar chart (the Agg backend shows nothing)
    # The k-fold summary reads <model prefix>EvaluationResult-<project>_<fold>-1.json: the service put
    # the prefix in front of the name as it was, with no "/" of its own.
    summary = Metrics(base).k_fold_model_summary(BUCKET, f"{prefix}k_fold_", n_splits=1)
    assert summary.loc[0, "F1Score"] == described.loc["F1Score", "Performance"]
    assert (summary.loc[0, "NumberOfTrainImages"], summary.loc[0, "NumberOfTestImages"]) == (20, 20)

    stopped = lv.stop_model(model_version="1", wait=True)
    assert stopped["Status"] == "STOPPING_HOSTING" and "Error" not in stopped
    assert _model(lookoutvision_emulator, project)["Status"] == "TRAINED"

    # The SDK's clean-up deletes the datasets and the model before the project, as DeleteProject requires.
    assert lv.delete_lookoutvision_project(project) == {"Success": True}
    assert project not in [p["ProjectName"] for p in lookoutvision_emulator.client().list_projects()["Projects"]]


def _model(emulator: Any, project: str) -> dict[str, Any]:
    return emulator.client().describe_model(ProjectName=project, ModelVersion="1")["ModelDescription"]
