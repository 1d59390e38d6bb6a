"""Engine accuracy across seeds: the same data fitted with several seeds, every seed reported.

    .venv/bin/python benchmarks/engine_seeds_bench.py --seeds 0,1,2 --json out.json
    .venv/bin/python benchmarks/engine_seeds_bench.py --runs kolektor_segmentation --seeds 1

Runs (each fitted once per seed, on 2 torch threads by default):
  * kolektor_segmentation / kolektor_classification: KolektorSDD's own train/test split (no physical
    item in both), with masks / labels only; the test masks give pixel AUROC and (segmentation) IoU;
  * kolektor_reversed_segmentation / kolektor_reversed_classification: the same split the other way
    round (trained on items kos31-kos50, tested on kos01-kos30): a second held-out split by physical
    item, so that a change is not judged on one test set alone;
  * cookies_segmentation / cookies_classification: the 63 template images, tested on the 22 test
    images (which have no masks: no pixel figures);
  * cookies_pixels: the cookies with masks, fitted on normals 1-20 and anomalies 1-20 and tested on
    the rest of the training images (12 masked anomalies, 11 normals), for the maps' pixel figures;
    cookies_pixels_labels: the same, fitted without the masks (a classification model's map).

Per fit: test precision / recall / F1 at the model's own threshold, AUROC, pixel AUROC, mean IoU,
the out-of-fold F1 and expected precision / recall from the training report, near-duplicate groups
found, fit time and predict p50.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_datasets import DEFAULT_ROOTS, LABEL_COLOURS, seed_list, write_results  # noqa: E402
from engine_bench import cookies_dir, fit_and_test, load_cookies, load_kolektor, machine  # noqa: E402

RUNS = ("kolektor_segmentation", "kolektor_classification", "kolektor_reversed_segmentation",
        "kolektor_reversed_classification", "cookies_segmentation", "cookies_classification",
        "cookies_pixels", "cookies_pixels_labels")
# Cookies images whose index is at most this are trained on in the cookies_pixels run.
_COOKIES_PIXELS_TRAIN_UP_TO = 20


def _split(run: str, cookies: Path, kolektor: Path) -> tuple[list, list, dict | None]:
    """(train, test, label colours) of a run."""
    dataset, kind = run.split("_", 1)
    if dataset == "kolektor":
        fit_on, test_on = ("test", "train") if kind.startswith("reversed_") else ("train", "test")
        masks = kind.endswith("segmentation")
        return (load_kolektor(kolektor, fit_on, masks), load_kolektor(kolektor, test_on, True),
                LABEL_COLOURS["kolektorsdd"] if masks else None)
    colours = LABEL_COLOURS["cookies"]
    if kind.startswith("pixels"):
        train, _ = load_cookies(cookies, masks=True)
        later = [int(it.name.rsplit("-", 1)[1]) > _COOKIES_PIXELS_TRAIN_UP_TO for it in train]
        masks = kind == "pixels"
        fitted = [it if masks else replace(it, mask=None) for it, out in zip(train, later, strict=True) if not out]
        return fitted, [it for it, out in zip(train, later, strict=True) if out], colours if masks else None
    train, test = load_cookies(cookies, masks=kind == "segmentation")
    return train, test, colours if kind == "segmentation" else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated subset of {', '.join(RUNS)}")
    ap.add_argument("--seeds", type=seed_list, default="0,1,2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cookies", help="cookies dataset directory")
    ap.add_argument("--kolektor", help="KolektorSDD directory (default ../shared/datasets/kolektorsdd)")
    ap.add_argument("--json", help="also write results here")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    kolektor = Path(args.kolektor) if args.kolektor else DEFAULT_ROOTS["kolektorsdd"]
    res: dict = {"machine": machine(), "threads": args.threads, "seeds": args.seeds}
    for run in args.runs.split(","):
        if run not in RUNS:
            raise SystemExit(f"unknown run {run!r}; choose from {', '.join(RUNS)}")
        train, test, colours = _split(run, cookies_dir(args.cookies), kolektor)
        fits = []
        for seed in args.seeds:
            fits.append(fit_and_test(train, test, colours, seed))
            print(run, {k: fits[-1][k] for k in ("seed", "test_f1", "cv_f1", "test_auroc", "pixel_auroc",
                                                 "test_mean_iou", "candidate", "fit_s")}, flush=True)
        f1s = [f["test_f1"] for f in fits]
        res[run] = {"fits": fits, "test_f1_spread": round(max(f1s) - min(f1s), 4),
                    "test_f1_median": statistics.median(f1s)}
    write_results(res, Path(args.json) if args.json else None)


if __name__ == "__main__":
    main()
