"""The console's project list over plain HTTP: it shows a picture of each project without reading the
project's entries, so the most visited page costs the same for a project of a few thousand images as
for one of ten."""
from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from emulator.store.repositories import Entries
from emulator.testing import LocalEmulator
from tests.console.console_data import classification_line, create_dataset, synthetic_image

BUCKET = "console-project-list"
IMAGES = 3000


@contextmanager
def entry_rows_read(entries: Entries) -> Iterator[list[int]]:
    """Counts what the store's entry repository hands out while inside: a list's length, one for any
    other answer (a record, a source-ref, counts). Wraps its public methods, changing nothing they do."""
    read = [0]

    def counting(method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            answer = method(*args, **kwargs)
            read[0] += len(answer) if isinstance(answer, list) else int(answer is not None)
            return answer
        return call

    names = [name for name in vars(Entries) if not name.startswith("_")]
    for name in names:
        setattr(entries, name, counting(getattr(entries, name)))
    try:
        yield read
    finally:
        for name in names:
            delattr(entries, name)


def pictures(page: str) -> dict[str, str | None]:
    """Each project row of the list: the S3 URI of its picture (None: no picture)."""
    found: dict[str, str | None] = {}
    for project, cell in re.findall(r'<tr data-project="([^"]+)">\s*<td class="project-thumb">(.*?)</td>', page, re.S):
        source = re.search(r'src="([^"]+)"', cell)
        found[project] = parse_qs(urlsplit(html.unescape(source[1])).query)["uri"][0] if source else None
    return found


def test_the_project_list_reads_one_picture_per_project_not_every_entry(tmp_path: Path) -> None:
    with LocalEmulator(tmp_path) as server:
        lookout, s3 = server.client("lookoutvision"), server.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        image = synthetic_image(0, False)  # what the images show does not matter here, only how many

        def put(key: str) -> str:
            s3.put_object(Bucket=BUCKET, Key=key, Body=image)
            return f"s3://{BUCKET}/{key}"

        with ThreadPoolExecutor(8) as pool:
            normal = list(pool.map(put, (f"big/normal-{n:04d}.png" for n in range(IMAGES))))
            anomalies = list(pool.map(put, ("big/scratch-b.png", "big/scratch-a.png")))
            small = list(pool.map(put, ("small/part-2.png", "small/part-1.png")))
        for project in ("big", "small", "empty"):
            lookout.create_project(ProjectName=project)
        create_dataset(lookout, s3, BUCKET, "big", "train",
                       [classification_line(ref, "normal") for ref in normal[:IMAGES // 2]]
                       + [classification_line(ref, "anomaly") for ref in anomalies])
        create_dataset(lookout, s3, BUCKET, "big", "test",
                       [classification_line(ref, "normal") for ref in normal[IMAGES // 2:]])
        create_dataset(lookout, s3, BUCKET, "small", "train", [classification_line(ref, "normal") for ref in small])

        with entry_rows_read(server.backend.store.entries) as read:
            response = requests.get(f"{server.endpoint_url}/console/", timeout=60)
        assert response.status_code == 200
        assert pictures(response.text) == {"big": f"s3://{BUCKET}/big/scratch-a.png",
                                           "small": f"s3://{BUCKET}/small/part-1.png", "empty": None}
        words = " ".join(re.sub(r"<[^>]+>", " ", response.text).split())
        assert f"train : {IMAGES // 2 + 2} images ({IMAGES // 2} normal, 2 anomaly)" in words
        # Per project: one picture and each dataset's counts; reading the entries would be thousands.
        assert read[0] <= 3 * 3, read[0]
