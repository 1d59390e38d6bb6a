"""ListDatasetEntries: every filter, their combinations, and NextToken/MaxResults pagination."""
from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from emulator.api.pagination import encode_token
from tests.api.datasets_support import DatasetKit, error_of, labelled


@pytest.fixture
def populated(kit: DatasetKit) -> tuple[DatasetKit, list[str], dt.datetime]:
    """A dataset made in two steps: 2 normal + 1 anomaly + 1 unlabelled, then (after `between`) 2 anomalies."""
    refs = kit.images(4, stem="first") + kit.images(2, stem="second")
    kit.create("train", [labelled(refs[0], "normal"), labelled(refs[1], "normal"), labelled(refs[2], "anomaly"),
                         {"source-ref": refs[3]}])
    time.sleep(0.05)
    between = dt.datetime.now(dt.UTC)
    time.sleep(0.05)
    kit.update([labelled(refs[4], "anomaly"), labelled(refs[5], "anomaly")])
    return kit, refs, between


def _refs(kit: DatasetKit, **filters: Any) -> list[str]:
    return [entry["source-ref"] for entry in kit.entries(**filters)]


def test_without_filters_every_entry_in_insertion_order(populated) -> None:
    kit, refs, _ = populated
    assert _refs(kit) == refs


@pytest.mark.parametrize(("filters", "expected"), [
    ({"Labeled": True}, [0, 1, 2, 4, 5]),
    ({"Labeled": False}, [3]),
    ({"AnomalyClass": "normal"}, [0, 1]),
    ({"AnomalyClass": "anomaly"}, [2, 4, 5]),
    ({"SourceRefContains": "second-"}, [4, 5]),
    ({"SourceRefContains": "first-1.png"}, [1]),
    ({"SourceRefContains": "FIRST"}, []),  # case-sensitive, like S3 keys
    ({"Labeled": True, "AnomalyClass": "anomaly", "SourceRefContains": "first"}, [2]),
])
def test_filters(populated, filters: dict[str, Any], expected: list[int]) -> None:
    kit, refs, _ = populated
    assert _refs(kit, **filters) == [refs[i] for i in expected]


def test_creation_date_filters(populated) -> None:
    kit, refs, between = populated
    assert _refs(kit, BeforeCreationDate=between) == refs[:4]
    assert _refs(kit, AfterCreationDate=between) == refs[4:]
    assert _refs(kit, AfterCreationDate=between, AnomalyClass="anomaly") == refs[4:]
    assert _refs(kit, AfterCreationDate=between, BeforeCreationDate=between) == []
    later = between + dt.timedelta(days=1)
    assert _refs(kit, BeforeCreationDate=later) == refs


def test_replacing_an_entry_keeps_its_creation_date(populated) -> None:
    kit, refs, between = populated
    kit.update([labelled(refs[3], "anomaly")])
    assert _refs(kit, BeforeCreationDate=between) == refs[:4]
    assert _refs(kit, AfterCreationDate=between) == refs[4:]


def test_pagination(populated) -> None:
    kit, refs, _ = populated
    pages, token = [], None
    while True:
        kwargs = {"NextToken": token} if token else {}
        page = kit.lookout.list_dataset_entries(ProjectName=kit.project, DatasetType="train", MaxResults=4, **kwargs)
        pages.append(page["DatasetEntries"])
        token = page.get("NextToken")
        if token is None:
            break
    assert [len(p) for p in pages] == [4, 2]
    filtered = kit.lookout.list_dataset_entries(ProjectName=kit.project, DatasetType="train", MaxResults=2,
                                                AnomalyClass="anomaly")
    assert len(filtered["DatasetEntries"]) == 2 and "NextToken" in filtered
    rest = kit.lookout.list_dataset_entries(ProjectName=kit.project, DatasetType="train", MaxResults=2,
                                            AnomalyClass="anomaly", NextToken=filtered["NextToken"])
    assert len(rest["DatasetEntries"]) == 1 and "NextToken" not in rest
    exact = kit.lookout.list_dataset_entries(ProjectName=kit.project, DatasetType="train", MaxResults=6)
    assert len(exact["DatasetEntries"]) == 6 and "NextToken" not in exact


def test_invalid_pagination_and_filter_values(kit: DatasetKit, lookout_unvalidated) -> None:
    kit.create("train")
    another_listing = encode_token("a-project-name")  # ListProjects' kind of position
    for kwargs, fragment in (({"NextToken": "bm90IGEgdG9rZW4="}, "NextToken"),
                             ({"NextToken": another_listing}, "NextToken"),
                             ({"MaxResults": 101}, "maxResults"),
                             ({"AnomalyClass": "broken"}, "anomalyClass")):
        with pytest.raises(ClientError) as err:
            lookout_unvalidated.list_dataset_entries(ProjectName=kit.project, DatasetType="train", **kwargs)
        code, status, message = error_of(err)
        assert (code, status) == ("ValidationException", 400), kwargs
        assert fragment in message
