"""KolektorSDD's fine-tuned candidate on splits by physical part: many seeds, several threshold rules
judged on the same networks.

    .venv/bin/python benchmarks/engine_splits_bench.py --splits official --seeds 0,1,2 --json out.json
    .venv/bin/python benchmarks/engine_splits_bench.py --splits mod6=1 --seeds 0-9 --threads 1

Why a bench of its own: on KolektorSDD the model is the "finetuned" candidate, and what varies from
one seed to the next is its fold networks and the threshold chosen on their out-of-fold scores.
``engine_seeds_bench.py`` fits the whole model (every candidate, ~80 s per seed at 2 threads) on two
fixed splits; engine v3's rounds 3-11 needed tens of seeds on fresh splits, and the same networks
judged under more than one threshold rule. This runs the steps ``engine.training.fit`` takes for that
candidate -- the same near-duplicate groups, grouped folds, cell targets, fold networks, calibration
and threshold -- from the frozen backbone's outputs, computed once per split, and keeps every run's
out-of-fold and test scores (and each fold network's test scores) in the JSON for later comparisons.
Unlike ``fit`` it scores every training image out of fold, even past ``FitOptions.max_cv_images`` (240;
splits modK=R with K >= 6 can train on more).

Splits (``--splits``, comma-separated):
  * ``official``: the dataset's own train / test folders, what ``benchmarks/api_accuracy_bench.py``
    trains and tests through the API. In that order and at 2 torch threads a run gives the API's
    verdicts on the same machine (engine v3 round 11, on an AMD EPYC: seed 0, labels only, 17 / 0 / 4
    TP / FP / FN, out-of-fold F1 0.966, as the API's round 9 on that kind of machine).
  * ``reversed``: the same folders the other way round.
  * ``modK=R``: all parts (``kosNN``; kos39 counts as kos38, ``part_of``); those with NN % K == R are
    the test set, the rest train.
Modes (``--modes``): ``labels`` (image labels only) and ``masks`` (every training crack's mask).

Threshold rules, each on the run's out-of-fold scores and applied to the same test scores: ``youden``
(Youden's J), ``f1`` and ``mcc`` (the cut maximising out-of-fold F1 or Matthews' correlation); each
the middle of the widest optimal gap (``engine.threshold.optimal_cut``).

Working size (``--resolution``, ``--min-resolution``, as ``FitOptions``): KolektorSDD's 256x640 images
are used at native size by default; ``--resolution 512 --min-resolution 384`` upscales them 1.5x to
384x960 (engine v3 round 23), at about 2.2x the time of a run.

Threads: the networks depend on the torch thread count (finetune.py) and on the processor (its
kernels round differently), so ``--threads`` and the machine are part of a run's identity; 2 threads
reproduce the API on a 2-core machine. Two processes at ``--threads 1`` with
different seeds use 2 cores about twice as well as one at 2.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_datasets import DEFAULT_ROOTS, LABEL_COLOURS, seed_list, write_results  # noqa: E402
from engine_bench import load_kolektor, machine  # noqa: E402

from engine import FitOptions  # noqa: E402
from engine.backbone import load_pretrained_state_dict, trunk_state_dict  # noqa: E402
from engine.dataset import prepare  # noqa: E402
from engine.features import PatchFeatureExtractor, pooled  # noqa: E402
from engine.finetune import cell_targets, flipped_views, out_of_fold, repeat_seed  # noqa: E402
from engine.groups import grouped_folds, near_duplicate_groups, tone_free_thumbnails  # noqa: E402
from engine.images import working_size  # noqa: E402
from engine.metrics import auroc, prf  # noqa: E402
from engine.threshold import optimal_cut, youden_threshold  # noqa: E402

MODES = ("labels", "masks")
RULES = ("youden", "f1", "mcc")
_BATCH = 2  # images per backbone pass, as engine.training.fit describes its training images


@dataclass
class Split:
    """One split's images in training order, with what every seed and mode reuses: the training masks
    decoded once and the backbone's outputs."""

    name: str
    train: list  # engine Items
    test: list
    train_masks: list  # label-index maps (None for normals): the cell targets of the masks mode
    train_views: torch.Tensor  # (n, 4, C0, h0, w0) base-stage features of each image's flips (finetune.flipped_views)
    train_pooled: np.ndarray  # (n, 2D) [mean, max]-pooled descriptors, one view the groups are found from
    train_thumbnails: np.ndarray  # the other (engine.groups.tone_free_thumbnails)
    test_base: torch.Tensor


# kos38 and kos39 are one commutator photographed twice: seven image pairs (kos38_Part1 and
# kos39_Part7, ...) with pixel correlation 0.96-0.99 on 32x80 grayscale thumbnails, against <= 0.8 for
# any two images of different numbers otherwise (engine v3 round 13). A split by part keeps them together.
_SAME_PART = {39: 38}


def part_of(item: Any) -> int:
    """The physical part of a KolektorSDD item named ``kosNN_PartM``: NN, except where two numbers
    name one part (``_SAME_PART``)."""
    number = int(item.name.split("_")[0][3:])
    return _SAME_PART.get(number, number)


def split_items(name: str, root: Path) -> tuple[list, list]:
    """(train, test) engine Items of a split, masks attached to every anomaly."""
    folders = {"official": ("train", "test"), "reversed": ("test", "train")}
    if name in folders:
        fit_on, test_on = folders[name]
        return load_kolektor(root, fit_on, True), load_kolektor(root, test_on, True)
    if not name.startswith("mod") or "=" not in name:
        raise SystemExit(f"unknown split {name!r}: official, reversed or modK=R")
    k, r = (int(v) for v in name[3:].split("="))
    every = load_kolektor(root, "train", True) + load_kolektor(root, "test", True)
    test = [it for it in every if part_of(it) % k == r]
    return [it for it in every if part_of(it) % k != r], test


def describe(extractor: PatchFeatureExtractor, images: list[np.ndarray]) -> tuple[torch.Tensor, np.ndarray]:
    """(base-stage features, [mean, max]-pooled descriptors) of ``images`` in batches of _BATCH."""
    bases, descriptors = [], []
    for s in range(0, len(images), _BATCH):
        f, b = extractor.describe(images[s : s + _BATCH], batch_size=_BATCH)
        descriptors.append(pooled(f.cpu()))
        bases.append(b.cpu())
    return torch.cat(bases).contiguous(memory_format=torch.channels_last), torch.cat(descriptors).double().numpy()


def load_split(name: str, root: Path, opts: FitOptions) -> tuple[Split, PatchFeatureExtractor]:
    """The split's items and features, computed once for every seed and mode."""
    train, test = split_items(name, root)
    height, width = train[0].image.shape[:2]
    trunk = trunk_state_dict(opts.backbone, load_pretrained_state_dict(opts.backbone, opts.backbone_weights))
    extractor = PatchFeatureExtractor(opts.backbone, trunk, working_size(width, height, opts.resolution,
                                                                         opts.min_resolution))
    prepared = prepare(train, LABEL_COLOURS["kolektorsdd"])
    train_base, train_pooled = describe(extractor, prepared.images)
    train_views = flipped_views(extractor, prepared.images, train_base, _BATCH)
    test_base, _ = describe(extractor, prepare(test, LABEL_COLOURS["kolektorsdd"]).images)
    return (Split(name, train, test, prepared.masks, train_views, train_pooled, tone_free_thumbnails(prepared.images),
                  test_base), extractor)


# ----------------------------------------------------------------------------------- threshold rules
def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray) -> np.ndarray:
    return 2 * tp / np.maximum(2 * tp + fp + fn, 1)


def _mcc(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray) -> np.ndarray:
    tp, fp, fn, tn = (a.astype(np.float64) for a in (tp, fp, fn, tn))
    den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return np.where(den > 0, (tp * tn - fp * fn) / np.where(den > 0, den, 1.0), 0.0)


def thresholds(neg: np.ndarray, pos: np.ndarray) -> dict[str, float]:
    """Every rule's threshold from out-of-fold normal and anomaly scores."""
    return {"youden": youden_threshold(neg, pos), "f1": optimal_cut(neg, pos, _f1),
            "mcc": optimal_cut(neg, pos, _mcc)}


def confusion(flagged: np.ndarray, labels: np.ndarray) -> tuple[int, int, int]:
    """(tp, fp, fn) of the verdicts ``flagged`` against ``labels`` (1 = anomaly)."""
    return (int((flagged & (labels == 1)).sum()), int((flagged & (labels == 0)).sum()),
            int((~flagged & (labels == 1)).sum()))


def _errors(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray) -> np.ndarray:
    return -(fp + fn)


def fewest_errors(scores: np.ndarray, labels: np.ndarray) -> int:
    """The fewest errors (false positives + misses) any one cut on ``scores`` makes against ``labels``:
    what the ranking allows. A run's errors beyond it are the chosen threshold's (BENCHMARKS, engine v3
    round 17). ``optimal_cut`` always flags at least the top score, so flagging nothing (every anomaly
    missed) is compared separately."""
    cut = optimal_cut(scores[labels == 0], scores[labels == 1], _errors)
    _, fp, fn = confusion(scores >= cut, labels)
    return min(fp + fn, int((labels == 1).sum()))


# ----------------------------------------------------------------------------------- one run
def run_once(split: Split, extractor: PatchFeatureExtractor, mode: str, seed: int, opts: FitOptions) -> dict[str, Any]:
    """One seed of one mode: the fold networks, their out-of-fold and test scores, every rule's verdicts."""
    t0 = time.perf_counter()
    y = np.array([1 if it.label == "anomaly" else 0 for it in split.train])
    groups = near_duplicate_groups(split.train_pooled, split.train_thumbnails).ids
    masks = split.train_masks if mode == "masks" else [None] * len(y)
    gh, gw = extractor.grid
    cells = cell_targets(masks, y, 1 if mode == "masks" else 0, (gh // 2, gw // 2))
    folds = min(opts.finetune_folds, int(y.sum()), int((1 - y).sum()))
    partitions = [grouped_folds(y, groups, folds, repeat_seed(seed, r)) for r in range(opts.finetune_repeats)]
    oof, nets = out_of_fold(extractor.trunk, split.train_views, y, cells, partitions, opts.finetune_epochs, seed,
                            torch.device("cpu"))
    # Each fold network's test scores are kept too: an out-of-fold score comes from one network and a
    # deployed one from their mean, and these show how much of the difference is one network's noise
    # (engine v3 round 23). Their mean is the deployed score, computed in the same pass.
    per_network = nets.network_scores(split.test_base)
    test_scores = per_network.mean(1)
    y_test = np.array([1 if it.label == "anomaly" else 0 for it in split.test])
    names = [it.name for it in split.test]
    rules: dict[str, Any] = {}
    for rule, cut in thresholds(oof[y == 0], oof[y == 1]).items():
        flagged = test_scores >= cut
        tp, fp, fn = confusion(flagged, y_test)
        rules[rule] = {"threshold": cut, "tp": tp, "fp": fp, "fn": fn, "test_f1": prf(tp, fp, fn)[2],
                       "cv_f1": prf(*confusion(oof >= cut, y))[2],
                       # Youden's cut mostly sits just under the lowest out-of-fold anomaly (round 17).
                       "keeps_every_oof_anomaly": bool(cut <= oof[y == 1].min()),
                       "false_positives": [n for n, f, t in zip(names, flagged, y_test, strict=True) if f and not t],
                       "misses": [n for n, f, t in zip(names, flagged, y_test, strict=True) if t and not f]}
    return {"split": split.name, "mode": mode, "seed": seed, "groups": int(len(np.unique(groups))),
            "cv_auroc": auroc(y, oof), "test_auroc": auroc(y_test, test_scores),
            "test_fewest_errors": fewest_errors(test_scores, y_test), "rules": rules,
            "seconds": round(time.perf_counter() - t0, 1),
            "test_network_scores": [[round(float(s), 6) for s in row] for row in per_network.T],
            "oof_scores": [round(float(s), 6) for s in oof], "oof_labels": y.tolist(),
            "oof_names": [it.name for it in split.train],
            "test_scores": [round(float(s), 6) for s in test_scores], "test_labels": y_test.tolist(),
            "test_names": names}


def summary(runs: list[dict[str, Any]]) -> list[str]:
    """Markdown rows: per split, mode and rule, errors over the seeds (and how many of them the best cut
    on the test scores would not make: the threshold's share) and the test F1 of each."""
    rows = ["| split | mode | rule | errors (FP/FN) | threshold's share | mean test F1 | sd | min | test F1 per seed |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    keys = sorted({(r["split"], r["mode"]) for r in runs})
    for split, mode in keys:
        mine = sorted((r for r in runs if (r["split"], r["mode"]) == (split, mode)), key=lambda r: r["seed"])
        for rule in RULES:
            picks = [r["rules"][rule] for r in mine]
            f1s = [p["test_f1"] for p in picks]
            fp, fn = sum(p["fp"] for p in picks), sum(p["fn"] for p in picks)
            sd = statistics.stdev(f1s) if len(f1s) > 1 else 0.0
            threshold_share = fp + fn - sum(r["test_fewest_errors"] for r in mine)
            per_seed = " ".join(f"{f:.3f}" for f in f1s)
            rows.append(f"| {split} | {mode} | {rule} | {fp + fn} ({fp}/{fn}) | {threshold_share} | "
                        f"{statistics.mean(f1s):.3f} | {sd:.3f} | {min(f1s):.3f} | {per_seed} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kolektorsdd", type=Path, default=DEFAULT_ROOTS["kolektorsdd"])
    parser.add_argument("--splits", default="official")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--seeds", type=seed_list, default="0,1,2")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=FitOptions().finetune_epochs)
    parser.add_argument("--repeats", type=int, default=FitOptions().finetune_repeats)
    parser.add_argument("--resolution", type=int, default=FitOptions().resolution,
                        help="FitOptions.resolution: the working size's pixel budget")
    parser.add_argument("--min-resolution", type=int, default=FitOptions().min_resolution,
                        help="FitOptions.min_resolution: a shorter side below this is upscaled to it")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not (args.kolektorsdd / "train").is_dir():
        raise SystemExit(f"KolektorSDD is not at {args.kolektorsdd}: pass --kolektorsdd")
    modes = args.modes.split(",")
    if not set(modes) <= set(MODES):
        raise SystemExit(f"--modes: {', '.join(MODES)}")
    torch.set_num_threads(args.threads)
    opts = FitOptions(finetune_epochs=args.epochs, finetune_repeats=args.repeats, resolution=args.resolution,
                      min_resolution=args.min_resolution)
    opts.validate()
    results: dict[str, Any] = {"machine": {**machine(), "torch_threads": args.threads},
                               "options": {"epochs": args.epochs, "repeats": args.repeats,
                                           "resolution": args.resolution, "min_resolution": args.min_resolution},
                               "runs": []}
    for name in args.splits.split(","):
        split, extractor = load_split(name, args.kolektorsdd, opts)
        for mode in modes:
            for seed in args.seeds:
                run = run_once(split, extractor, mode, seed, opts)
                results["runs"].append(run)
                youden = run["rules"]["youden"]
                print(f"{name} {mode} seed {seed}: youden {youden['tp']}/{youden['fp']}/{youden['fn']} "
                      f"F1 {youden['test_f1']:.3f} (cv {youden['cv_f1']:.3f}); "
                      + ", ".join(f"{r} F1 {run['rules'][r]['test_f1']:.3f}" for r in RULES[1:])
                      + f"; test AUROC {run['test_auroc']:.4f}; {run['seconds']} s", flush=True)
                if args.json:  # after every run, so an interrupted bench keeps what it measured
                    write_results(results, args.json, echo=False)
    results["summary"] = summary(results["runs"])
    print("\n".join(results["summary"]))
    write_results(results, args.json, echo=False)


if __name__ == "__main__":
    main()
