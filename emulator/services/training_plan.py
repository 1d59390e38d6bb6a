"""What CreateModel trains on: the documented prerequisites, and the choice of training and test images.

`plan_training` runs inside the CreateModel request and applies the documented prerequisites
(limits.md, model-create-dataset.md) so that a project that cannot be trained is refused at once,
as the console's disabled "Train model" button and the API did. What can only be learnt by reading
the images is left to the job (`emulator.services.training_job`). The plan is fixed when
CreateModel answers: later dataset changes do not affect a model in training.

CreateModel right after CreateDataset (scripts written for the service did this, e.g. AWS's workshop
notebook) is accepted: while a dataset of the project is still being imported or updated, the model
is created TRAINING with an empty plan marked `waiting`, and its job chooses the images once no
dataset job of the project runs any more (`emulator.services.training_job`).

The plan is kept in the model's directory (``training-data.json``), and beside the model's artifact
in the object store, from the moment CreateModel answers, so that a training a stop or a crash cut
off starts again from it when a server (any node sharing the database and store) starts.
"""
from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from emulator.api.errors import ConflictException, InternalServerException, ValidationException
from emulator.api.statuses import DATASET_BUSY, DATASET_TRAINABLE, ResourceType
from emulator.backend import Backend
from emulator.s3.objects import ObjectNotFound
from emulator.services import artifacts
from emulator.services.datasets import Entry, list_entries
from emulator.services.lookups import model_dir

# limits.md / model-create-dataset.md. A single-dataset project is split automatically, so it needs
# enough of each class for both halves; per-label minimums count images with exactly one anomaly label.
SINGLE_MIN_NORMAL, SINGLE_MIN_ANOMALY, SINGLE_MIN_PER_LABEL = 20, 10, 20
SEPARATE_MIN_TRAIN_NORMAL, SEPARATE_MIN_TEST_NORMAL, SEPARATE_MIN_TEST_ANOMALY = 10, 10, 10
SEPARATE_MIN_PER_LABEL = 10

# The automatic split of a single dataset: this share of every stratum goes to the test set, drawn
# with a fixed seed so the same dataset always gives the same split (and the same model).
TEST_SHARE = 0.2
SPLIT_SEED = 20201120


@dataclass(frozen=True)
class Sample:
    """One labelled image chosen for training or testing: an Entry reduced to what training needs."""

    source_ref: str
    label: str  # "normal" | "anomaly"
    mask_ref: str | None
    label_colors: dict[str, str]
    line: dict[str, Any]


@dataclass
class TrainingPlan:
    """Everything the background job needs; built and checked inside the CreateModel request."""

    project: str
    version: int
    model_arn: str
    train: list[Sample]
    test: list[Sample]
    auto_split: bool
    label_colors: dict[str, str] = field(default_factory=dict)  # empty: a classification model
    output_bucket: str = ""
    output_prefix: str = ""
    # CreateModel came while a dataset was being imported or updated: the images are not chosen yet.
    waiting: bool = False

    @property
    def is_segmentation(self) -> bool:
        return bool(self.label_colors)


class TrainingError(Exception):
    """A problem with the training data that the user has to fix; the message becomes StatusMessage."""


_PLAN_FILE = "training-data.json"


def save_plan(backend: Backend, plan: TrainingPlan) -> None:
    """Keep the plan with the model: what it is trained and tested on, and what a restart resumes.
    Locally and in the object store (any node may resume it); InternalServerException when the
    store cannot take it, since a model must not be TRAINING without a plan every node can read."""
    directory = model_dir(backend, plan.project, plan.version)
    directory.mkdir(parents=True, exist_ok=True)
    data = json.dumps(asdict(plan))
    temporary = directory / f"{_PLAN_FILE}.tmp"
    temporary.write_text(data)
    temporary.replace(directory / _PLAN_FILE)  # a crash leaves the old plan or the new one, never half
    try:
        artifacts.store_file(backend, plan.project, plan.version, _PLAN_FILE, data.encode())
    except ObjectNotFound as exc:
        raise InternalServerException(f"The model's training plan could not be stored ({exc}); try again.") from None


def load_plan(backend: Backend, project: str, version: int) -> TrainingPlan | None:
    """The model's saved plan, from this node's disk or else the object store; None when there is
    none (or it is unreadable)."""
    try:
        try:
            text = (model_dir(backend, project, version) / _PLAN_FILE).read_bytes()
        except FileNotFoundError:  # CreateModel was answered by another node
            stored = artifacts.stored_file(backend, project, version, _PLAN_FILE)
            if stored is None:
                return None
            text = stored
        saved = json.loads(text)
        saved["train"] = [Sample(**sample) for sample in saved["train"]]
        saved["test"] = [Sample(**sample) for sample in saved["test"]]
        return TrainingPlan(**saved)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def plan_training(backend: Backend, project: str) -> tuple[list[Sample], list[Sample], bool, dict[str, str]]:
    """Check the project's datasets against the documented prerequisites and choose the images.

    Returns (train, test, auto_split, label_colors); raises the error CreateModel answers otherwise.
    """
    _require_ready(backend, project, "train", required=True)
    has_test = _require_ready(backend, project, "test", required=False)
    train = _labelled(list_entries(backend, project, "train"))
    label_colors = _label_colors(train, "training")
    if has_test:
        test = _labelled(list_entries(backend, project, "test"))
        _label_colors(test, "test")
        _check_counts(train, "training dataset", SEPARATE_MIN_TRAIN_NORMAL, 0,
                      SEPARATE_MIN_PER_LABEL, label_colors, "a project with separate training and test datasets")
        _check_counts(test, "test dataset", SEPARATE_MIN_TEST_NORMAL, SEPARATE_MIN_TEST_ANOMALY,
                      SEPARATE_MIN_PER_LABEL, label_colors, "a project with separate training and test datasets")
        return train, test, False, label_colors
    _check_counts(train, "dataset", SINGLE_MIN_NORMAL, SINGLE_MIN_ANOMALY, SINGLE_MIN_PER_LABEL,
                  label_colors, "a single-dataset project (it is split into training and test images)")
    train, test = split_dataset(train)
    return train, test, True, label_colors


def _require_ready(backend: Backend, project: str, dataset_type: str, required: bool) -> bool:
    """Whether the dataset exists and can be trained on; an error if it is busy or unusable."""
    row = backend.store.datasets.get(project, dataset_type)
    if row is None:
        if required:
            raise _no_train_dataset(project)
        return False
    status = row.status
    if status in DATASET_BUSY:
        raise ConflictException(
            f"The {dataset_type} dataset of project {project} is {status}; wait until it finishes before "
            "calling CreateModel.", resource_id=dataset_type, resource_type=ResourceType.DATASET)
    if status not in DATASET_TRAINABLE:
        raise ValidationException(
            f"The {dataset_type} dataset of project {project} is {status} and can't be used for training; "
            "delete it and create it again.")
    return True


def busy_dataset(backend: Backend, project: str) -> str | None:
    """How a dataset of the project that is still being imported or updated is described (e.g.
    "train dataset (CREATE_IN_PROGRESS)"); None when no dataset job of the project is running."""
    row = backend.store.datasets.first_in(project, DATASET_BUSY)
    return None if row is None else f"{row.dataset_type} dataset ({row.status})"


def require_train_dataset(backend: Backend, project: str) -> None:
    """The check of `plan_training` that holds whatever the datasets' jobs will bring: a train dataset."""
    if backend.store.datasets.get(project, "train") is None:
        raise _no_train_dataset(project)


def _no_train_dataset(project: str) -> ValidationException:
    return ValidationException(f"Project {project} has no train dataset. Create one with CreateDataset (DatasetType "
                               "train) before calling CreateModel.")


def _labelled(entries: Sequence[Entry]) -> list[Sample]:
    """Unlabelled images are ignored by training (limits.md, "Lack of labels")."""
    return [Sample(e.source_ref, e.label, e.mask_ref, dict(e.label_colors), e.line)
            for e in entries if e.label in ("normal", "anomaly")]


def _label_colors(samples: Sequence[Sample], which: str) -> dict[str, str]:
    """The anomaly labels and their colours over all masked images; one colour per label."""
    colours: dict[str, str] = {}
    for sample in samples:
        if sample.mask_ref is None:
            continue
        for name, colour in sample.label_colors.items():
            known = colours.setdefault(name, colour.upper())
            if known != colour.upper():
                raise ValidationException(
                    f"The anomaly label {name} has the colour {known} in one {which} image and {colour} in "
                    f"{sample.source_ref}; each anomaly label must have one colour in all mask images.")
    return colours


def _check_counts(samples: Sequence[Sample], what: str, min_normal: int, min_anomaly: int, min_per_label: int,
                  label_colors: dict[str, str], configuration: str) -> None:
    counts = Counter(sample.label for sample in samples)
    needs = []
    if counts["normal"] < min_normal:
        needs.append(f"at least {min_normal} images labeled normal (it has {counts['normal']})")
    if counts["anomaly"] < min_anomaly:
        needs.append(f"at least {min_anomaly} images labeled anomaly (it has {counts['anomaly']})")
    single_label = Counter(next(iter(s.label_colors)) for s in samples
                           if s.label == "anomaly" and s.mask_ref is not None and len(s.label_colors) == 1)
    for name in sorted(label_colors):
        if single_label[name] < min_per_label:
            needs.append(f"at least {min_per_label} anomaly images whose mask has only the label {name} "
                         f"(it has {single_label[name]})")
    if needs:
        raise ValidationException(
            f"Not enough labeled images to train: the {what} of {configuration} needs " + "; ".join(needs)
            + ". Add labeled images with UpdateDatasetEntries and try again.")


def split_dataset(samples: Sequence[Sample]) -> tuple[list[Sample], list[Sample]]:
    """Deterministic stratified split of a single dataset into (train, test).

    Strata are the class and, for masked anomalies, the set of anomaly labels, so every label of a
    segmentation model is tested. Each stratum is ordered by source-ref and shuffled with a fixed
    seed; a rounded TEST_SHARE of it (at least one image when the stratum has two) goes to test.
    """
    strata: dict[tuple[str, tuple[str, ...]], list[Sample]] = defaultdict(list)
    for sample in samples:
        labels = tuple(sorted(sample.label_colors)) if sample.mask_ref else ()
        strata[(sample.label, labels)].append(sample)
    rng = random.Random(SPLIT_SEED)  # noqa: S311 - a reproducible split, not a secret
    train: list[Sample] = []
    test: list[Sample] = []
    for key in sorted(strata):
        members = sorted(strata[key], key=lambda s: s.source_ref)
        rng.shuffle(members)
        n_test = max(1, round(len(members) * TEST_SHARE)) if len(members) >= 2 else 0
        test.extend(members[:n_test])
        train.extend(members[n_test:])
    return train, test
