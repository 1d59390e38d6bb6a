"""The engine's near-duplicate groups (``engine/groups.py``) on sets with and without siblings.

    .venv/bin/python benchmarks/groups_bench.py --json groups.json

Why a bench of its own: the groups decide which images cross-validation may hold out together, and a
change to how they are found needs the same questions answered every time (engine v3 rounds 13-14
answered them with scratch scripts):

* **random**: sets of unrelated random descriptors (20-240 images, 16-256 dimensions, 10 each) -- how
  many get groups they should not;
* **subsets**: random subsets of real training sets (20-60 images, 12 each) of KolektorSDD's train
  folder (kos01-kos30), its test folder (kos31-kos50, where kos38 and kos39 are one commutator
  photographed twice) and the cookies (train and test, 85 images) -- how many get groups, and how many
  a group of at least half their images, which LFV's smallest datasets cannot afford;
* **full**: the three real sets whole;
* **twins**: 144 synthetic sets, 3-12 parts captured twice among 121 (32-128 dimensions, four noise
  levels, three draws) -- in how many the groups are exactly the parts;
* **order**: the groups of KolektorSDD's test folder under six orders of its images;
* **time**: one call at 300 and 1,000 images of 304 dimensions, with and without captured pairs.

It measures the ``engine`` of the tree it sits in; to measure an older commit, run a copy of it from
a worktree of that commit (``git worktree add``).
The real sets are searched in both views ``engine.training.fit`` searches: [mean, max]-pooled patch
features at the engine's working size, and tone-free thumbnails; the random and synthetic sets are one
view of random descriptors.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_datasets import DEFAULT_ROOTS, write_results  # noqa: E402
from engine_bench import load_cookies, load_kolektor, machine  # noqa: E402
from engine_splits_bench import describe  # noqa: E402

from engine import FitOptions  # noqa: E402
from engine.backbone import load_pretrained_state_dict, trunk_state_dict  # noqa: E402
from engine.features import PatchFeatureExtractor  # noqa: E402
from engine.groups import near_duplicate_groups, tone_free_thumbnails  # noqa: E402
from engine.images import working_size  # noqa: E402


def views(images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The two views training searches: descriptors and tone-free thumbnails."""
    return descriptors(images), tone_free_thumbnails(images)


def descriptors(images: list[np.ndarray]) -> np.ndarray:
    """[mean, max]-pooled patch descriptors at the default options' working size (the splits bench's
    ``describe``)."""
    opts = FitOptions()
    trunk = trunk_state_dict(opts.backbone, load_pretrained_state_dict(opts.backbone, opts.backbone_weights))
    h, w = images[0].shape[:2]
    extractor = PatchFeatureExtractor(opts.backbone, trunk, working_size(w, h, opts.resolution, opts.min_resolution))
    return describe(extractor, images)[1]


def siblings(x: np.ndarray, thumbnails: np.ndarray | None = None) -> int:
    """Images that near_duplicate_groups gives a sibling."""
    return int(near_duplicate_groups(x, thumbnails).summary()["images_with_siblings"])


def random_sets() -> dict[str, int]:
    """Per set size: how many of 30 random sets (10 each of 16, 64 and 256 dimensions) get groups."""
    return {str(n): sum(siblings(np.random.default_rng(1000 * n + 10 * dim + r).normal(size=(n, dim))) > 0
                        for dim in (16, 64, 256) for r in range(10))
            for n in (20, 30, 45, 60, 120, 240)}


def subsets(sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Per real set and subset size: images with siblings in each of 12 random subsets."""
    out: dict[str, Any] = {}
    for name, (x, thumbnails) in sets.items():
        for n in (20, 30, 45, 60):
            picks = [np.random.default_rng(r).choice(len(x), n, replace=False) for r in range(12)]
            found = [siblings(x[pick], thumbnails[pick]) for pick in picks]
            out[f"{name} {n}"] = {"with_groups": sum(f > 0 for f in found),
                                  "half_or_more_grouped": sum(f >= n / 2 for f in found), "siblings": found}
    return out


def twins() -> dict[str, int]:
    """Synthetic parts captured twice: sets whose groups are exactly the parts."""
    exact = total = 0
    for dim in (32, 64, 128):
        for pairs in (3, 5, 7, 12):
            for noise in (0.6, 0.8, 1.0, 1.2):
                for r in range(3):
                    rng = np.random.default_rng(r)
                    base = rng.normal(size=(121 - pairs, dim))
                    x = np.concatenate([base, base[:pairs] + noise * rng.normal(size=(pairs, dim))])
                    part = np.concatenate([np.arange(121 - pairs), np.arange(pairs)])
                    ids = near_duplicate_groups(x).ids
                    total += 1
                    exact += (all(len(set(part[ids == g])) == 1 for g in np.unique(ids))
                              and all(len(set(ids[part == p])) == 1 for p in range(pairs)))
    return {"sets": total, "exact": exact}


def orders(x: np.ndarray, thumbnails: np.ndarray) -> int:
    """Distinct partitions of the images over six orders (1: the order does not matter)."""
    seen = set()
    for k in range(6):
        perm = np.random.default_rng(k).permutation(len(x)) if k else np.arange(len(x))
        ids = near_duplicate_groups(x[perm], thumbnails[perm]).ids[np.argsort(perm)]
        seen.add(frozenset(frozenset(np.flatnonzero(ids == g).tolist()) for g in np.unique(ids)))
    return len(seen)


def timings() -> dict[str, float]:
    """Seconds for one call at 300 and 1,000 images of 304 dimensions, without and with pairs."""
    out = {}
    rng = np.random.default_rng(0)
    near_duplicate_groups(rng.normal(size=(50, 304)))  # imports and first-call costs
    for n, pairs in ((300, 0), (300, 20), (1000, 0), (1000, 50)):
        base = rng.normal(size=(n - pairs, 304))
        x = np.concatenate([base, base[:pairs] + 0.5 * rng.normal(size=(pairs, 304))])
        t0 = time.perf_counter()
        near_duplicate_groups(x)
        out[f"{n} images, {pairs} pairs"] = round(time.perf_counter() - t0, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kolektorsdd", type=Path, default=DEFAULT_ROOTS["kolektorsdd"])
    parser.add_argument("--cookies", type=Path, default=DEFAULT_ROOTS["cookies"])
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the descriptors")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cookies_train, cookies_test = load_cookies(args.cookies, masks=False)
    kolektor = {folder: [it.image for it in load_kolektor(args.kolektorsdd, folder, False)]
                for folder in ("train", "test")}
    sets = {"kolektorsdd train (kos01-30)": views(kolektor["train"]),
            "kolektorsdd test (kos31-50)": views(kolektor["test"]),
            "cookies (train + test)": views([it.image for it in cookies_train + cookies_test])}
    results = {"machine": machine(),
               "random_sets_with_groups_of_30": random_sets(),
               "subsets": subsets(sets),
               "full": {name: near_duplicate_groups(*both).summary() for name, both in sets.items()},
               "twins": twins(),
               "partitions_over_6_orders": orders(*sets["kolektorsdd test (kos31-50)"]),
               "seconds": timings()}
    write_results(results, args.json)


if __name__ == "__main__":
    main()
