"""Reproduce the engine figures in BENCHMARKS.md (section "Engine").

    .venv/bin/python benchmarks/engine_bench.py                 # everything (~3-4 min on 2 cores)
    .venv/bin/python benchmarks/engine_bench.py --skip-memory   # cookies only
    .venv/bin/python benchmarks/engine_bench.py --json out.json

And on KolektorSDD (../shared/datasets/kolektorsdd, or --kolektor): test precision / recall / F1 /
AUROC at the threshold chosen from training data, every candidate's cross-validated scores, fit time,
for the official split and for a held-out split by physical item inside the training set.

Measures, on the shared cookies dataset (../shared/datasets/cookies, or --cookies / LOOKOUT_COOKIES_DIR):
  * fit wall time on the 63 training images (classification; segmentation with the 32 masks),
    excluding image decoding and test evaluation;
  * test-set precision / recall / F1 / AUROC (14 normal + 8 anomaly, never used for any choice);
  * segmentation mean IoU by 5-fold cross-validation over the 32 masked training anomalies;
  * predict latency per image (p50 / p90) with torch at --threads threads, and its CPU time;
  * peak resident memory of a fit on --memory-images synthetic 576x768 images (child process,
    ru_maxrss, includes the decoded images themselves);
  * the training-time budget at the issue's second size (child process, --budget-images images of
    --budget-size x --budget-size): KolektorSDD's train and test images, then their mirror images
    until there are enough, resized, image labels only, default options - real defects, so that the
    labelled candidates and fine-tuning run as they would for a user (skipped without KolektorSDD).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_datasets import DEFAULT_ROOTS, colour_mask, kolektorsdd, rgb, write_results  # noqa: E402


def machine() -> dict:
    model = platform.processor() or ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {"cpu_model": model, "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)}


def cookies_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    if os.environ.get("LOOKOUT_COOKIES_DIR"):
        return Path(os.environ["LOOKOUT_COOKIES_DIR"])
    return ROOT / ".." / "shared" / "datasets" / "cookies"


def load_cookies(root: Path, masks: bool):
    import numpy as np
    from PIL import Image

    from engine import Item

    def rgb(p):
        with Image.open(p) as im:
            return np.asarray(im.convert("RGB"))

    files = root / "dataset-files"
    tr, mk, te = files / "training-images", files / "mask-images", root / "test-images"
    train = [Item(rgb(tr / f"normal-{i}.jpg"), "normal", None, f"normal-{i}") for i in range(1, 32)]
    train += [
        Item(rgb(tr / f"anomaly-{i}.jpg"), "anomaly", rgb(mk / f"anomaly-{i}.png") if masks else None, f"anomaly-{i}")
        for i in range(1, 33)
    ]
    test = [Item(rgb(te / f"test-normal-{i}.jpg"), "normal", None, f"test-normal-{i}") for i in range(1, 15)]
    test += [Item(rgb(te / f"test-anomaly-{i}.jpg"), "anomaly", None, f"test-anomaly-{i}") for i in range(1, 9)]
    return train, test


def bench_cookies(root: Path, threads: int, repeats: int) -> dict:
    import torch

    from engine import FitOptions, fit

    torch.set_num_threads(threads)
    out: dict = {}
    for kind in ("classification", "segmentation"):
        train, test = load_cookies(root, masks=kind == "segmentation")
        colours = {"cracked": "#23A436"} if kind == "segmentation" else None
        times, model = [], None
        for _ in range(repeats):
            t0 = time.perf_counter()
            model = fit(train, None, FitOptions(seed=0, max_train_seconds=3600), label_colors=colours)
            times.append(time.perf_counter() - t0)
        m = model.evaluate(test)
        r = model.training_report
        out[kind] = {
            "fit_s_median": round(statistics.median(times), 2),
            "fit_s_all": [round(t, 2) for t in times],
            "test_precision": m.precision,
            "test_recall": m.recall,
            "test_f1": m.f1,
            "test_auroc": m.auroc,
            "candidate": r["candidate"],
            "cv_auroc": r["cv_auroc"],
            "cv_f1": r["cv_f1"],
            "seg_iou_cv": (r["seg_iou_cv"] or {}).get("mean_iou"),
            "phase_s": {k: v for k, v in r["timings_s"].items() if not k.startswith("extracting features (")},
        }
        # Latency: single-image predict, after warm-up, over all test images, 3 rounds.
        imgs = [it.image for it in test]
        for im in imgs[:3]:
            model.predict(im)
        lat, cpu = [], []
        for _ in range(3):
            for im in imgs:
                t0, c0 = time.perf_counter(), time.process_time()
                model.predict(im)
                lat.append((time.perf_counter() - t0) * 1000)
                cpu.append((time.process_time() - c0) * 1000)
        lat.sort()
        out[kind]["predict_ms_p50"] = round(statistics.median(lat), 1)
        out[kind]["predict_ms_p90"] = round(lat[int(0.9 * (len(lat) - 1))], 1)
        out[kind]["predict_cpu_ms_p50"] = round(statistics.median(cpu), 1)  # all threads together
    return out


def kolektor_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    return DEFAULT_ROOTS["kolektorsdd"]


def load_kolektor(root: Path, split: str, masks: bool, items: set[str] | None = None) -> list:
    """KolektorSDD images of ``split`` as engine Items; masks become one 'crack' label in red.
    ``items``: keep only these physical items (kosNN), for held-out splits by item."""
    from engine import Item

    return [Item(rgb(pic.path), pic.label, colour_mask("kolektorsdd", pic.mask) if masks and pic.mask else None,
                 pic.path.stem)
            for pic in kolektorsdd(root, split) if items is None or pic.path.stem.split("_")[0] in items]


def fit_and_test(train: list, test: list, colours: dict | None, seed: int = 0) -> dict:
    """Fit on ``train`` (the given seed), evaluate on ``test``: image and pixel metrics, the training
    report's out-of-fold figures, fit time and predict latency."""
    from engine import FitOptions, fit

    t0, c0 = time.perf_counter(), time.process_time()
    model = fit(train, None, FitOptions(seed=seed, max_train_seconds=3600), label_colors=colours)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    m = model.evaluate(test)
    r = model.report
    lat = []
    for it in test[:20]:
        t1 = time.perf_counter()
        model.predict(it.image)
        lat.append((time.perf_counter() - t1) * 1000)
    return {
        "train_images": len(train), "test_images": len(test), "fit_s": round(wall, 1), "fit_cpu_s": round(cpu, 1),
        "seed": seed, "test_precision": m.precision, "test_recall": m.recall, "test_f1": m.f1,
        "test_auroc": m.auroc, "pixel_auroc": m.pixel_auroc, "test_mean_iou": m.mean_iou,
        "candidate": r["candidate"], "candidates": r["candidates"], "threshold": r["threshold"],
        "threshold_rule": r["threshold_rule"], "cv_f1": r["cv_f1"],
        "expected_precision": r.get("expected_precision"), "expected_recall": r.get("expected_recall"),
        "near_duplicates": r.get("near_duplicates"), "work_size": r["work_size"],
        "seg_iou_cv": (r["seg_iou_cv"] or {}).get("mean_iou"), "predict_ms_p50": round(statistics.median(lat[2:]), 1),
    }


KOLEKTOR_RUNS = ("segmentation", "classification", "heldout_segmentation")


def bench_kolektor(root: Path, threads: int, runs: tuple[str, ...] = KOLEKTOR_RUNS) -> dict:
    """KolektorSDD: the official train/test split (items kos01-30 / kos31-50), segmentation and
    classification; and a held-out split inside train by physical item (fit on kos01-20, test on kos21-30)."""
    import torch

    torch.set_num_threads(threads)
    crack = {"crack": "#FF0000"}
    out = {}
    if "segmentation" in runs:
        out["segmentation"] = fit_and_test(load_kolektor(root, "train", True), load_kolektor(root, "test", True),
                                            crack)
    if "classification" in runs:
        out["classification"] = fit_and_test(load_kolektor(root, "train", False),
                                              load_kolektor(root, "test", False), None)
    if "heldout_segmentation" in runs:
        first = {f"kos{i:02d}" for i in range(1, 21)}
        rest = {f"kos{i:02d}" for i in range(21, 31)}
        out["heldout_segmentation"] = fit_and_test(load_kolektor(root, "train", True, first),
                                                    load_kolektor(root, "train", True, rest), crack)
    return out


def memory_child(n: int, threads: int) -> None:
    """Fit on n synthetic 576x768 images (10% with a drawn crack) and print JSON with peak RSS."""
    import numpy as np
    import torch

    from engine import FitOptions, Item, fit

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    h, w = 768, 576
    base = rng.integers(60, 200, (h // 8, w // 8, 3)).astype(np.uint8)
    base = np.repeat(np.repeat(base, 8, 0), 8, 1)
    items = []
    for i in range(n):
        dy, dx = rng.integers(0, 16, 2)
        img = np.roll(base, (int(dy), int(dx)), (0, 1)).copy()
        img += rng.integers(0, 12, (h, w, 1), dtype=np.uint8)
        label = "normal"
        if i % 10 == 9:
            y0, x0 = rng.integers(100, 600), rng.integers(100, 450)
            img[y0 : y0 + 80, x0 : x0 + 6] = 20
            label = "anomaly"
        items.append(Item(img, label, None, f"syn-{i}"))
    t0 = time.perf_counter()
    model = fit(items, options=FitOptions(seed=0, max_train_seconds=3600))
    dt = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    images_mb = n * h * w * 3 / 2**20
    print(json.dumps({
        "images": n,
        "fit_s": round(dt, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "decoded_images_mb": round(images_mb, 1),
        "memory_bank": model.training_report["memory_bank"],
        "cv_images": model.training_report["n_cv_images"],
    }))


def budget_child(root: Path, n: int, size: int, threads: int) -> None:
    """Fit on ``n`` KolektorSDD images resized to size x size (labels only) and print JSON: fit time,
    peak RSS, the candidate chosen. Mirrored copies fill up to ``n``: the set has 290 images."""
    import numpy as np
    import torch
    from PIL import Image

    from engine import FitOptions, Item, fit

    torch.set_num_threads(threads)
    pictures = kolektorsdd(root, "train") + kolektorsdd(root, "test")
    items = []
    for k in range(n):
        pic = pictures[k % len(pictures)]
        img = np.asarray(Image.fromarray(rgb(pic.path)).resize((size, size), Image.BILINEAR))
        if k >= len(pictures):
            img = img[:, ::-1].copy()
        items.append(Item(img, pic.label, None, f"{pic.path.stem}-{k}"))
    t0 = time.perf_counter()
    model = fit(items, options=FitOptions(seed=0, max_train_seconds=3600))
    r = model.training_report
    print(json.dumps({
        "images": n, "size": size, "anomalies": r["n_anomaly"], "fit_s": round(time.perf_counter() - t0, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "candidate": r["candidate"], "cv_auroc": r["cv_auroc"], "skipped": r["skipped"],
    }))


def _child(args: list[str]) -> dict:
    """Run this script with ``args`` in a fresh process (its own peak RSS) and parse its JSON line."""
    p = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cookies", help="cookies dataset directory")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="fits per kind (median reported)")
    ap.add_argument("--memory-images", type=int, default=1000)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-cookies", action="store_true")
    ap.add_argument("--kolektor", help="KolektorSDD directory (default ../shared/datasets/kolektorsdd)")
    ap.add_argument("--skip-kolektor", action="store_true")
    ap.add_argument("--kolektor-runs", default=",".join(KOLEKTOR_RUNS),
                    help=f"comma-separated subset of {', '.join(KOLEKTOR_RUNS)}")
    ap.add_argument("--json", help="also write results here")
    ap.add_argument("--budget-images", type=int, default=300)
    ap.add_argument("--budget-size", type=int, default=300)
    ap.add_argument("--skip-budget", action="store_true")
    ap.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--budget-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.threads)
        return
    if args.budget_child:
        budget_child(kolektor_dir(args.kolektor), args.budget_images, args.budget_size, args.threads)
        return
    res: dict = {"machine": machine(), "threads": args.threads}
    if not args.skip_cookies:
        root = cookies_dir(args.cookies)
        if not (root / "dataset-files").is_dir():
            sys.exit(f"cookies dataset not found at {root}")
        res["cookies"] = bench_cookies(root, args.threads, args.repeats)
    if not args.skip_kolektor:
        root = kolektor_dir(args.kolektor)
        if not (root / "train").is_dir():
            sys.exit(f"KolektorSDD not found at {root} (or pass --skip-kolektor)")
        runs = tuple(r for r in args.kolektor_runs.split(",") if r)
        if not set(runs) <= set(KOLEKTOR_RUNS):
            sys.exit(f"--kolektor-runs: choose from {', '.join(KOLEKTOR_RUNS)}")
        res["kolektorsdd"] = bench_kolektor(root, args.threads, runs)
    if not args.skip_memory:
        res["memory"] = _child(["--memory-child", str(args.memory_images), "--threads", str(args.threads)])
    if not args.skip_budget and (kolektor_dir(args.kolektor) / "train").is_dir():
        res["budget"] = _child(["--budget-child", "--budget-images", str(args.budget_images), "--budget-size",
                                str(args.budget_size), "--threads", str(args.threads),
                                *(["--kolektor", args.kolektor] if args.kolektor else [])])
    write_results(res, Path(args.json) if args.json else None)


if __name__ == "__main__":
    main()
