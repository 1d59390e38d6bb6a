"""``fit``: from labelled items to a Model, choosing everything by cross-validation on training data.

``fit`` is a short pipeline of named steps (all loops bounded by counts; the clock is only a safety cap):

 1. ``prepare`` (dataset.py): validate items, decode masks.
 2. ``_extract_features``: patch descriptors once per image (frozen backbone, eval-mode BN), pooled
    descriptors, and a bounded random sample of normal patches.
 3. ``_build_memory_bank``: channel statistics of normal patches and a greedy-coreset memory bank,
    each entry tagged with its source image.
 3b. ``near_duplicate_groups`` (groups.py): captures of one part found from pooled descriptors and
    tone-free thumbnails; every out-of-fold split below holds out whole groups.
 4. ``_oneclass_out_of_fold``: k-NN maps for the cross-validation images, each scored with its
    group's bank entries masked out (leave-one-group-out; anomalies are never in the bank), less
    the border cells' excess measured on held-out normal maps (memory.positional_offset).
 5. ``_patch_candidate`` (masks only): a patch classifier learnt from the masks (patch_head.py),
    scored K-fold out-of-fold, refit on all masks.
 6. ``_supervised_candidates`` (enough labelled anomalies): a logistic head on pooled descriptors,
    K-fold out-of-fold, and "combined" (mean of it and the one-class score, each standardised).
 7. ``_finetuned_candidate`` (enough labelled anomalies): the backbone's upper stages fine-tuned on
    image labels and masks, one network per fold, on the stem's features of each image and of its
    three flips; out-of-fold scores (finetune.py).
 8. ``_choose``: the best cross-validated AUROC wins; near-ties go to the best out-of-fold F1 at each
    candidate's own threshold (its ``_OperatingPoint``, threshold.py's rule), then to the widest margin
    around it, then prefer combined, then oneclass (more robust to defect types absent from
    training), then finetuned.
 9. ``_calibrate``: the winner's operating point is the decision threshold; scores are normalised
    around it.
10. ``_pixel_calibration``: the pixel threshold of the anomaly map (segmentation: the one that best
    reproduces the training masks, its IoU reported by K-fold CV).
11. ``Model.assemble`` from the parts; the test set, when given, is only evaluated.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .backbone import load_pretrained_state_dict, trunk_state_dict
from .dataset import TrainingData, prepare
from .device import resolve_device
from .errors import EngineError
from .features import PatchFeatureExtractor, pooled
from .finetune import FineTuned, cell_targets, flipped_views, repeat_seed
from .finetune import out_of_fold as finetune_out_of_fold
from .groups import folds_hold_out_groups, grouped_folds, near_duplicate_groups, tone_free_thumbnails
from .images import working_size
from .memory import MemoryBank, greedy_coreset, positional_offset
from .metrics import auroc, prf
from .model import Model
from .options import FitOptions
from .patch_head import (
    PatchClassifier,
    image_score_map,
    out_of_fold_maps,
    patch_inputs,
    stack_rows,
    training_rows,
)
from .scoring import smooth, upsample
from .segmentation import best_pixel_threshold, cross_validated_iou, resize_mask
from .supervised import LinearHead
from .threshold import (
    ScoreNormaliser,
    choose_threshold,
    normal_only_threshold,
    normal_score_stats,
    youden_threshold,
)
from .types import Item

_TIE = 0.005  # AUROC difference treated as a tie between candidates
# Pixel thresholds tried for a segmentation map: this many quantiles of the masked training images'
# map values, from the median up (a defect covers a small share of an image, so its pixels sit in
# the upper tail). The count bounds the cost: every level is scored against every mask, in-sample
# and in each IoU fold.
_PIXEL_LEVELS = 60
_PIXEL_LEVEL_QUANTILES = (0.5, 0.999)
_PREFERENCE = ("combined", "oneclass", "finetuned", "patch", "supervised")


class _Clock:
    """Progress reporting plus the max_train_seconds safety cap."""

    def __init__(self, limit: float, progress: Callable[[float, str], None] | None) -> None:
        self.start = time.perf_counter()
        self.limit = limit
        self.progress = progress
        self.marks: dict[str, float] = {}

    def step(self, fraction: float, message: str, check: bool = True) -> None:
        elapsed = time.perf_counter() - self.start
        self.marks[message] = round(elapsed, 3)
        if check and elapsed > self.limit:
            raise EngineError(
                f"training exceeded max_train_seconds={self.limit:g} (at: {message}); use fewer or "
                "smaller images, a lower FitOptions.resolution, or raise the cap"
            )
        if self.progress is not None:
            self.progress(float(min(max(fraction, 0.0), 1.0)), message)


@dataclass
class _Features:
    """What one pass of the backbone over the training images leaves behind."""

    extractor: PatchFeatureExtractor
    trunk: dict[str, torch.Tensor]
    work: tuple[int, int]
    cv_idx: np.ndarray  # images scored out-of-fold
    kept: torch.Tensor  # (len(cv_idx), D, gh, gw) raw descriptors of those images
    samples: torch.Tensor  # (N, D) random normal patches the memory bank is drawn from
    origin: np.ndarray  # (N,) the image each sample came from
    pooled: torch.Tensor  # (n, 2D) [mean, max]-pooled raw descriptors of every image (features.pooled)
    base: torch.Tensor | None  # (len(cv_idx), C0, h0, w0) base-stage features, if fine-tuning may run
    # (n,) near-duplicate group of every image (groups.py): every out-of-fold split holds out whole
    # groups. Set once the pooled descriptors exist; until then each image is its own group.
    groups: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def grid(self) -> tuple[int, int]:
        return self.extractor.grid


@dataclass
class _OneClass:
    """The one-class candidate's out-of-fold pass (``_oneclass_out_of_fold``): the memory bank, and each
    cross-validation image's map with its own near-duplicate group left out of the bank. The maps are
    keyed by image index, not by position in ``cv_idx``, because the patch classifier and the pixel
    calibration look them up image by image."""

    bank: MemoryBank
    raw_maps: dict[int, torch.Tensor]  # image index -> (gh, gw) k-NN distances less the bank's offset, if any
    oof_maps: dict[int, torch.Tensor]  # image index -> the same map smoothed (``opts.map_sigma``)
    scores: np.ndarray  # aligned with cv_idx: each smoothed map's maximum


@dataclass
class _Candidates:
    """Out-of-fold image scores (aligned with cv_idx) per candidate, and the parts each needs."""

    scores: dict[str, np.ndarray] = field(default_factory=dict)
    patch: PatchClassifier | None = None  # refit on all masks
    combined: dict[str, float] | None = None  # centre and scale of the two scores combined
    # (inputs, labels) the supervised head is refit on, if the chosen candidate needs it.
    supervised_data: tuple[np.ndarray, np.ndarray] | None = None
    finetuned: FineTuned | None = None  # the fold networks
    patch_maps: dict[int, torch.Tensor] | None = None
    skipped: dict[str, str] = field(default_factory=dict)  # candidate -> why it did not run


def fit(
    train: Sequence[Item],
    test: Sequence[Item] | None = None,
    options: FitOptions | None = None,
    label_colors: Mapping[str, str] | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> Model:
    """Train a model; if ``test`` is given, evaluate on it and attach ``model.test_metrics``.

    A segmentation model is trained iff any labelled training item has a mask (then ``label_colors``
    is required). Raises EngineError for any input the caller can fix.
    """
    opts = options if options is not None else FitOptions()
    if not isinstance(opts, FitOptions):
        raise EngineError("options must be an engine.FitOptions")
    opts.validate()
    device = resolve_device(opts.device)
    clock = _Clock(opts.max_train_seconds, progress)
    clock.step(0.0, "validating images")
    data = prepare(train, label_colors)
    rng = np.random.default_rng(opts.seed)
    y = np.array(data.y, dtype=np.int64)

    feats = _extract_features(data, y, opts, device, rng, clock)
    # The pooled descriptors: the max keeps where a part's distinctive details are, which
    # separated captures of one part from other parts far better than the mean alone (groups.py); the
    # tone-free thumbnails find the captures of one part under other exposures.
    groups = near_duplicate_groups(feats.pooled.double().numpy(), tone_free_thumbnails(data.images))
    feats.groups = groups.ids
    oneclass = _oneclass_out_of_fold(feats, y, opts, clock)
    candidates = _Candidates(scores={"oneclass": oneclass.scores})
    _patch_candidate(candidates, data, y, feats, oneclass, opts, rng, clock)
    _supervised_candidates(candidates, y, feats, oneclass, opts, clock)
    _finetuned_candidate(candidates, data, y, feats, opts, device, clock)
    ycv = y[feats.cv_idx]
    points = {name: _OperatingPoint.of(scores, ycv) for name, scores in candidates.scores.items()}
    summaries = {name: _candidate_summary(scores, ycv, points[name]) for name, scores in candidates.scores.items()}
    chosen, aucs = _choose(summaries, opts.candidates)
    image_norm, threshold_report = _calibrate(candidates.scores[chosen], ycv, points[chosen])
    oof_pred = candidates.scores[chosen] >= image_norm.threshold
    pixel_source, pixel_norm, seg_report = _pixel_calibration(data, y, feats, oneclass, candidates, oof_pred,
                                                              opts, clock)
    report: dict[str, Any] = {
        "n_train": len(y),
        "n_normal": int((y == 0).sum()),
        "n_anomaly": int((y == 1).sum()),
        "n_masked": int(sum(m is not None for m in data.masks)),
        "n_cv_images": int(len(feats.cv_idx)),
        "near_duplicates": groups.summary(),
        # Image folds (the fallback when a class has fewer than two groups) flatter the out-of-fold
        # figures wherever near-duplicates exist: the report says which kind the choices were made on.
        "cv_holds_out": ("groups" if folds_hold_out_groups(ycv, feats.groups[feats.cv_idx], opts.cv_folds, opts.seed)
                         else "images (a class has fewer than two near-duplicate groups)"),
        "work_size": list(feats.work),
        "grid": list(feats.grid),
        "memory_bank": int(oneclass.bank.entries.shape[0]),
        "device": str(device),
        "candidate": chosen,
        "cv_auroc": aucs,
        "candidates": summaries,
        "choice": _choice_reason(chosen, aucs, opts.candidates, summaries),
        "skipped": candidates.skipped,
        **({"finetuned_score": candidates.finetuned.score_name} if candidates.finetuned is not None else {}),
        **threshold_report,
        "seg_iou_cv": seg_report,
    }
    height, width = data.images[0].shape[:2]
    config: dict[str, Any] = {
        "backbone": opts.backbone,
        "image_size": [int(width), int(height)],
        "work_size": [int(feats.work[0]), int(feats.work[1])],
        "map_sigma": float(opts.map_sigma),
        "is_segmentation": bool(data.labels),
        "labels": data.labels,
        "colours": data.colours,
        "candidate": chosen,
        "image_norm": image_norm.to_dict(),
        "pixel_norm": pixel_norm.to_dict(),
        "pixel_source": pixel_source,
        "options": opts.to_dict(),
        "training": report,
    }
    heads = _final_heads(chosen, candidates, oneclass, pixel_source, opts.seed)
    model = Model.assemble(config, feats.trunk, heads, extractor=feats.extractor, device=device)
    clock.step(0.95, "model assembled")
    # The model exists now: evaluation is not subject to the training-time cap.
    if test is not None:
        clock.step(0.96, "evaluating test set", check=False)
        model.test_metrics = model.evaluate(test)
    clock.step(1.0, "done", check=False)
    report["timings_s"] = dict(clock.marks)
    model.training_report = report
    model.config["training"] = report
    return model


# ----------------------------------------------------------------------------------- the steps
def _extract_features(data: TrainingData, y: np.ndarray, opts: FitOptions, device: torch.device,
                      rng: np.random.Generator, clock: _Clock) -> _Features:
    """One backbone pass over the training images, keeping only what later steps need."""
    clock.step(0.02, "loading backbone")
    trunk = trunk_state_dict(opts.backbone, load_pretrained_state_dict(opts.backbone, opts.backbone_weights))
    height, width = data.images[0].shape[:2]
    work = working_size(width, height, opts.resolution, opts.min_resolution)
    extractor = PatchFeatureExtractor(opts.backbone, trunk, work, device)
    gh, gw = extractor.grid
    n, n_patches = len(y), gh * gw
    has_mask = np.array([m is not None for m in data.masks], dtype=bool)
    cv_idx = _cv_subset(y, has_mask, opts.max_cv_images, rng)
    normals = np.flatnonzero(y == 0)
    per_image = min(n_patches, int(math.ceil(opts.max_bank_candidates / len(normals))))
    keep_row = {int(i): r for r, i in enumerate(cv_idx.tolist())}
    base: torch.Tensor | None = None
    # Preallocated buffers: one allocation each instead of thousands of small ones, which keeps the
    # allocator from fragmenting (RSS on 1,000 images dropped by ~1 GB).
    samples: torch.Tensor | None = None
    kept = pooled_all = torch.empty(0)
    c, bs = 0, 2
    for s in range(0, n, bs):
        f, b = extractor.describe(data.images[s : s + bs], batch_size=bs)
        f = f.cpu()
        if samples is None:
            d = f.shape[1]
            samples = torch.empty(len(normals) * per_image, d)
            kept = torch.empty(len(cv_idx), d, gh, gw)
            if _finetuning_runs(y[cv_idx], opts):
                base = torch.empty(len(cv_idx), *b.shape[1:], memory_format=torch.channels_last)
            pooled_all = torch.empty(n, 2 * d)
        pooled_all[s : s + f.shape[0]] = pooled(f)
        flat = f.flatten(2)
        for j in range(f.shape[0]):
            i = s + j
            if y[i] == 0:
                pick = (rng.choice(n_patches, per_image, replace=False) if per_image < n_patches
                        else np.arange(n_patches))
                samples[c : c + per_image] = flat[j][:, torch.from_numpy(np.sort(pick))].T
                c += per_image
            if i in keep_row:
                kept[keep_row[i]] = f[j]
                if base is not None:
                    base[keep_row[i]] = b[j].cpu()
        clock.step(0.05 + 0.5 * min(s + bs, n) / n, f"extracting features ({min(s + bs, n)}/{n})")
    if samples is None:  # unreachable: prepare() guarantees at least two images
        raise EngineError("no training images")
    return _Features(extractor, trunk, work, cv_idx, kept, samples, np.repeat(normals, per_image),
                     pooled_all, base)


def _build_memory_bank(feats: _Features, opts: FitOptions) -> tuple[MemoryBank, torch.Tensor]:
    """Standardise channels on normal patches; greedy-coreset bank of them (+ each entry's image)."""
    samples = feats.samples
    mu, sd = _channel_stats(samples)
    samples.sub_(mu).div_(sd)
    m = min(opts.memory_bank_size, len(samples))
    sel = greedy_coreset(samples, m, opts.seed)
    bank = MemoryBank(mu, sd, samples[sel].contiguous())
    origin = torch.from_numpy(feats.origin[sel.numpy()])
    feats.samples = torch.empty(0)  # the largest buffer of training: free it now
    return bank, origin


def _oneclass_out_of_fold(feats: _Features, y: np.ndarray, opts: FitOptions, clock: _Clock) -> _OneClass:
    """Leave-one-group-out k-NN maps of the cross-validation images (raw and smoothed): the bank
    entries drawn from the image's near-duplicate group (itself included) are masked out, as a new
    part has no capture in the bank; anomalies are never in the bank, but their normal siblings are."""
    bank, origin = _build_memory_bank(feats, opts)
    clock.step(0.65, "memory bank built")
    origin_group = torch.from_numpy(feats.groups[origin.numpy()])
    cv = feats.cv_idx.tolist()
    # Both stacks are allocated before the loops: a map allocated inside the loop outlives the
    # multi-megabyte distance matrices around it, and in the one shared heap (runtime.py) such small
    # long-lived blocks split the freed space. The 1,000-image fit's peak then varied from 2.4 to
    # 3.2 GB between runs of one commit, most likely with how torch's threads' allocations
    # interleaved (BENCHMARKS, engine v3 round 16).
    raw = torch.empty((len(cv), *feats.kept.shape[2:]))
    oof = torch.empty_like(raw)
    for r, i in enumerate(cv):
        excl: torch.Tensor | None = origin_group == int(feats.groups[i])
        if excl is not None and (bool(excl.all()) or not bool(excl.any())):
            excl = None  # nothing to mask, or a group holding every normal (the bank must stay usable)
        raw[r] = bank.distances(bank.standardise(feats.kept[r : r + 1]), exclude=excl)[0]
    normals = [r for r, i in enumerate(cv) if y[i] == 0]
    bank.offset = positional_offset(raw[normals]) if normals else None
    if bank.offset is not None:
        raw -= bank.offset
    for r in range(len(cv)):
        oof[r] = smooth(raw[r : r + 1], opts.map_sigma)[0]
    clock.step(0.72, "cross-validated one-class scores")
    scores = oof.amax((1, 2)).double().numpy()
    return _OneClass(bank, dict(zip(cv, raw, strict=True)), dict(zip(cv, oof, strict=True)), scores)


def _patch_candidate(cands: _Candidates, data: TrainingData, y: np.ndarray, feats: _Features,
                     oneclass: _OneClass, opts: FitOptions, rng: np.random.Generator, clock: _Clock) -> None:
    """Segmentation: the patch classifier learnt from the masks, its out-of-fold maps, and -- with
    enough masked anomalies -- its map maximum as the "patch" image-score candidate."""
    cv_idx = feats.cv_idx
    has_mask = np.array([m is not None for m in data.masks], dtype=bool)
    masked = [i for i in cv_idx.tolist() if has_mask[i]]
    if not data.labels or len(masked) < 2:
        return
    gh, gw = feats.grid
    row_of = {int(i): r for r, i in enumerate(cv_idx.tolist())}

    def std_feats(i: int) -> torch.Tensor:
        return oneclass.bank.standardise(feats.kept[row_of[i] : row_of[i] + 1])[0]

    def inputs_of(i: int) -> np.ndarray:
        return patch_inputs(std_feats(i)[None], oneclass.raw_maps[i][None], oneclass.oof_maps[i][None])

    rows = training_rows(cv_idx, y, data.masks, std_feats, oneclass.raw_maps, oneclass.oof_maps, gh, gw,
                         len(data.labels), opts, rng)
    px, pt = stack_rows(rows, cv_idx.tolist())
    if len(np.unique(pt[pt >= 0])) < 2:
        return
    maps, fold_stats = out_of_fold_maps(cv_idx, y, has_mask, feats.groups, rows, inputs_of, len(data.labels),
                                        opts, gh, gw)
    cands.patch_maps = maps
    clf = PatchClassifier.fit(px[pt >= 0], pt[pt >= 0], len(data.labels))
    own = [float(image_score_map(clf, inputs_of(i), gh, gw, opts.map_sigma).max()) for i in cv_idx if y[i] == 0]
    clf.score_centre, clf.score_scale = normal_score_stats(np.array(own))
    cands.patch = clf
    n_neg = int((y[cv_idx] == 0).sum())
    if len(masked) >= opts.min_anomalies_for_supervised and n_neg >= 2:
        # Each out-of-fold score in units of the fold model's own training-normal scores, as the
        # refit model's scores will be (see threshold.normal_score_stats).
        cands.scores["patch"] = np.array([(float(maps[i].max()) - fold_stats[i][0]) / fold_stats[i][1]
                                          for i in cv_idx], dtype=np.float64)
    clock.step(0.8, "cross-validated patch classifier")


def _supervised_candidates(cands: _Candidates, y: np.ndarray, feats: _Features, oneclass: _OneClass,
                           opts: FitOptions, clock: _Clock) -> None:
    """With enough labelled anomalies: the pooled-descriptor head ("supervised") and its mean with
    the one-class score ("combined"), both K-fold out-of-fold."""
    ycv = y[feats.cv_idx]
    n_pos, n_neg = int(ycv.sum()), int((1 - ycv).sum())
    if min(n_pos, n_neg) < opts.min_anomalies_for_supervised:
        return
    mu, sd = oneclass.bank.mean, oneclass.bank.std
    # Pooling commutes with the bank's standardisation (features.pooled), so this is the vector the
    # deployed model pools from standardised descriptors.
    pooled_all = ((feats.pooled - torch.cat([mu, mu])) / torch.cat([sd, sd])).double().numpy()
    xcv = pooled_all[feats.cv_idx]
    sup = np.zeros(len(ycv))
    for tr, te in grouped_folds(ycv, feats.groups[feats.cv_idx], opts.cv_folds, opts.seed):
        sup[te] = LinearHead.fit(xcv[tr], ycv[tr], opts.seed).logit(xcv[te])
    oc = oneclass.scores
    oc_c, oc_s = _std_stats(oc[ycv == 0])
    sp_c, sp_s = _std_stats(sup[ycv == 0])
    cands.scores["supervised"] = sup
    cands.scores["combined"] = 0.5 * ((oc - oc_c) / oc_s + (sup - sp_c) / sp_s)
    cands.combined = {"oc_center": oc_c, "oc_scale": oc_s, "sup_center": sp_c, "sup_scale": sp_s}
    # The final head is fit on all images, and only if the chosen candidate needs it.
    cands.supervised_data = (pooled_all, y)
    clock.step(0.86, "cross-validated supervised head")


def _finetuning_runs(ycv: np.ndarray, opts: FitOptions) -> bool:
    """Fine-tuning needs epochs to run and, like the supervised head, enough labelled images of both
    kinds among the cross-validation images."""
    n_pos, n_neg = int(ycv.sum()), int((1 - ycv).sum())
    wanted = opts.candidates is None or "finetuned" in opts.candidates
    return wanted and opts.finetune_epochs > 0 and min(n_pos, n_neg) >= opts.min_anomalies_for_supervised


def _finetuned_candidate(cands: _Candidates, data: TrainingData, y: np.ndarray, feats: _Features,
                         opts: FitOptions, device: torch.device, clock: _Clock) -> None:
    """The upper backbone stages fine-tuned on labels and masks, one network per fold; the fold
    networks' out-of-fold scores are the candidate's scores and, together, its deployed scorer."""
    ycv = y[feats.cv_idx]
    if feats.base is None:
        if opts.candidates is None or "finetuned" in opts.candidates:
            cands.skipped["finetuned"] = (
                "turned off (finetune_epochs=0)" if opts.finetune_epochs == 0 else
                f"needs at least {opts.min_anomalies_for_supervised} labelled anomalies and normal images")
        return
    for name, scores in cands.scores.items():
        auc = auroc(ycv, scores)
        if (opts.candidates is None or name in opts.candidates) and auc is not None and auc >= 1 - _TIE \
                and _OperatingPoint.of(scores, ycv).separates:
            # A candidate already separates the training images out-of-fold, at its threshold too:
            # fine-tuning could at best tie it, which is not worth its minutes.
            cands.skipped["finetuned"] = (f"not needed: {name} already separates the training images "
                                          f"(cross-validated AUROC {auc:.4f}, F1 1.0)")
            feats.base = None
            return
    # Computed only now: where another candidate already separates the images (the cookies), fine-tuning
    # and these three extra stem passes are skipped.
    views = flipped_views(feats.extractor, [data.images[i] for i in feats.cv_idx], feats.base)
    feats.base = None
    clock.step(0.86, "features of the flipped images")
    gh, gw = feats.grid
    cells = cell_targets([data.masks[i] for i in feats.cv_idx], ycv, len(data.labels), (gh // 2, gw // 2))
    folds = min(opts.finetune_folds, int(ycv.sum()), int((1 - ycv).sum()))
    partitions = [grouped_folds(ycv, feats.groups[feats.cv_idx], folds, repeat_seed(opts.seed, r))
                  for r in range(opts.finetune_repeats)]
    networks = sum(len(partition) for partition in partitions)

    def progress(done: int) -> None:
        clock.step(0.86 + 0.04 * done / networks, f"fine-tuning ({done}/{networks} networks)")

    scores, nets = finetune_out_of_fold(feats.extractor.trunk, views, ycv, cells, partitions,
                                        opts.finetune_epochs, opts.seed, device, progress)
    cands.scores["finetuned"] = scores
    cands.finetuned = nets


def _choose(summaries: Mapping[str, Mapping[str, Any]],
            allowed: Sequence[str] | None) -> tuple[str, dict[str, float | None]]:
    """The allowed candidate with the best out-of-fold AUROC (``summaries``: _candidate_summary of
    every candidate, computed once for the choice and the report). Near-ties (within _TIE) go to the
    highest out-of-fold F1 at each one's own threshold, then to the widest margin around that
    threshold (``cv_margin``), then to _PREFERENCE.

    AUROC ranks over every threshold; the model answers at one. Among candidates that rank equally
    well, the one with fewer out-of-fold errors at its threshold is the one whose threshold held on
    held-out parts: on the cookies the preferred "combined" candidate (AUROC 1.0) left a thin margin,
    its threshold fell below a held-out normal for seeds 1 and 2 (F1 0.985) and one test normal was
    flagged for seed 2, while "supervised" (AUROC 1.0, F1 1.0 every seed) was right on every test image.
    Where both separate the held-out images (F1 1.0 each), the margin says which threshold has room
    for new parts: cookies seed 2, "combined" had 0.05 of its normals' spread between its threshold
    and the nearest held-out score, and a test anomaly sat so close to it that the evaluation
    DescribeModel reports missed it while DetectAnomalies did not; "supervised" had 0.57. Exact ties
    keep the preference (defect types absent from training favour the one-class part)."""
    aucs = {name: summary["cv_auroc"] for name, summary in summaries.items()}
    valid = {k: a for k, a in aucs.items() if a is not None and (allowed is None or k in allowed)}
    if not valid:  # no labelled anomaly: the one-class model is the only choice
        return "oneclass", aucs
    tied = _near_ties(valid)

    def merit(c: str) -> tuple[float, float]:
        return summaries[c].get("cv_f1") or 0.0, summaries[c].get("cv_margin") or 0.0

    return max(tied, key=merit), aucs  # max keeps the first (preferred) of equal merits


def _near_ties(valid: Mapping[str, float | None]) -> list[str]:
    """Candidates within _TIE of the best AUROC, in _PREFERENCE order."""
    best = max(a for a in valid.values() if a is not None)
    return [c for c in _PREFERENCE if (valid.get(c) or -1.0) >= best - _TIE]


def _calibrate(scores: np.ndarray, ycv: np.ndarray, point: _OperatingPoint) -> tuple[ScoreNormaliser, dict[str, Any]]:
    """Score normalisation around the chosen candidate's threshold (``point``, on its out-of-fold
    ``scores``) and the threshold's part of the training report."""
    norm = ScoreNormaliser.fit(point.threshold, scores[ycv == 0], scores[ycv == 1])
    precision, recall, f1 = point.prf
    return norm, {
        "threshold": point.threshold,
        "threshold_rule": point.rule,
        # What to expect on new parts at this threshold: out-of-fold scores held out by group.
        "expected_precision": precision,
        "expected_recall": recall,
        "cv_f1": f1,
        "cv_confusion": {"tp": point.tp, "fp": point.fp, "fn": point.fn, "tn": point.tn},
    }


def _pixel_calibration(data: TrainingData, y: np.ndarray, feats: _Features, oneclass: _OneClass,
                       cands: _Candidates, oof_pred: np.ndarray, opts: FitOptions,
                       clock: _Clock) -> tuple[str, ScoreNormaliser, dict[str, Any] | None]:
    """Which grid map becomes the anomaly map, and its normalisation (0.5 = painted pixel).

    Classification: the one-class map with the one-class image threshold (its verdict is "some
    smoothed cell >= threshold", so map and verdict agree). Segmentation: the patch classifier's map
    (one-class if there are too few masks), thresholded where it best reproduces the training masks.
    """
    cv_idx = feats.cv_idx
    ycv = y[cv_idx]
    oc = oneclass.scores
    source, maps_of = "oneclass", oneclass.oof_maps
    if ycv.any():
        t_pix = youden_threshold(oc[ycv == 0], oc[ycv == 1])
    else:
        t_pix = normal_only_threshold(oc)
    pix_pos: np.ndarray = oc[ycv == 1]
    seg = None
    masked = [i for i in cv_idx.tolist() if data.masks[i] is not None]
    if data.labels and masked:
        if cands.patch_maps is not None:
            source, maps_of = "patch", cands.patch_maps
        ww, wh = feats.work
        maps = {i: upsample(maps_of[i][None], wh, ww)[0].numpy() for i in masked}
        gts = {i: resize_mask(data.masks[i], wh, ww) > 0 for i in masked}
        allv = np.concatenate([maps[i].ravel() for i in masked])
        levels = np.unique(np.quantile(allv, np.linspace(*_PIXEL_LEVEL_QUANTILES, _PIXEL_LEVELS)))
        t_pix, _ = best_pixel_threshold([maps[i] for i in masked], [gts[i] for i in masked], levels)
        pix_pos = np.concatenate([maps[i][gts[i]] for i in masked])
        seg = cross_validated_iou(masked, feats.groups[masked], maps, gts, levels, cv_idx, oof_pred, opts)
        clock.step(0.9, "segmentation threshold")
    normal_pixels = np.concatenate([maps_of[i].flatten().numpy() for i in cv_idx if y[i] == 0])
    return source, ScoreNormaliser.fit(t_pix, normal_pixels, pix_pos if len(pix_pos) else None), seg


def _final_heads(chosen: str, cands: _Candidates, oneclass: _OneClass, pixel_source: str,
                 seed: int) -> dict[str, Any]:
    """The parts the chosen candidate and the anomaly map need, refit on all training images."""
    heads: dict[str, Any] = {"bank": oneclass.bank}
    if chosen in ("supervised", "combined") and cands.supervised_data is not None:
        heads["supervised"] = LinearHead.fit(*cands.supervised_data, seed)
    if chosen == "combined" and cands.combined is not None:
        heads["combined"] = cands.combined
    if chosen == "finetuned" and cands.finetuned is not None:
        heads["finetuned"] = cands.finetuned
    if cands.patch is not None and (chosen == "patch" or pixel_source == "patch"):
        heads["patch"] = cands.patch
    return heads


# ----------------------------------------------------------------------------------- helpers
@dataclass(frozen=True)
class _OperatingPoint:
    """A candidate's threshold on its out-of-fold scores and the confusion it makes there. Computed
    once per candidate: the choice compares candidates at it, and the winner's becomes the model's
    threshold, so the two can never disagree."""

    threshold: float
    rule: str
    tp: int
    fp: int
    fn: int
    tn: int

    @classmethod
    def of(cls, scores: np.ndarray, ycv: np.ndarray) -> _OperatingPoint:
        """The threshold rule (threshold.choose_threshold) applied to out-of-fold ``scores``."""
        threshold, rule = choose_threshold(scores[ycv == 0], scores[ycv == 1])
        pred = scores >= threshold
        tp = int((pred & (ycv == 1)).sum())
        fp = int((pred & (ycv == 0)).sum())
        fn = int((~pred & (ycv == 1)).sum())
        return cls(float(threshold), rule, tp, fp, fn, int(len(ycv) - tp - fp - fn))

    @property
    def prf(self) -> tuple[float, float, float]:
        """Out-of-fold precision, recall and F1 at the threshold."""
        return prf(self.tp, self.fp, self.fn)

    @property
    def separates(self) -> bool:
        """No out-of-fold error at the threshold."""
        return self.fp == 0 and self.fn == 0


def _candidate_summary(scores: np.ndarray, ycv: np.ndarray, point: _OperatingPoint) -> dict[str, Any]:
    """Cross-validated figures of one candidate for the training report and the choice: AUROC, F1 at
    its own threshold (``point``), and ``cv_margin``, the distance from that threshold to the nearest
    held-out score in units of the spread of its held-out normal scores (comparable across
    candidates, whose scores come on different scales)."""
    neg, pos = scores[ycv == 0], scores[ycv == 1]
    out: dict[str, Any] = {"cv_auroc": auroc(ycv, scores)}
    if len(pos) and len(neg):
        out["cv_f1"] = point.prf[2]
        out["cv_margin"] = float(np.min(np.abs(scores - point.threshold))) / normal_score_stats(neg)[1]
    return out


def _choice_reason(chosen: str, aucs: dict[str, float | None], allowed: Sequence[str] | None,
                   summaries: Mapping[str, Mapping[str, Any]]) -> str:
    valid = {k: a for k, a in aucs.items() if a is not None and (allowed is None or k in allowed)}
    if not valid:
        if allowed is not None and any(a is not None for a in aucs.values()):
            return f"none of the allowed candidates ({', '.join(allowed)}) could run: one-class model"
        return "no labelled anomalies: one-class model (normal images only)"
    tied = _near_ties(valid)
    if len(tied) == 1:
        return f"highest cross-validated AUROC ({valid[chosen]:.4f})"
    f1s = ", ".join(f"{c} {summaries[c].get('cv_f1') or 0.0:.3f} (margin {summaries[c].get('cv_margin') or 0.0:.2f})"
                    for c in tied)
    return (f"{', '.join(tied)} within {_TIE} of the best cross-validated AUROC; {chosen} "
            f"(AUROC {valid[chosen]:.4f}) has the highest out-of-fold F1 at its own threshold ({f1s}; "
            f"equal F1s go to the wider margin around the threshold, in units of the held-out normals' "
            f"spread, then by the order {', '.join(_PREFERENCE)})")


def _cv_subset(y: np.ndarray, masked: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    """Indices scored out-of-fold: all images, or a class-balanced random subset of ``cap``
    (masked anomalies first, since they also train the patch classifier)."""
    if len(y) <= cap:
        return np.arange(len(y))
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    k_pos = min(len(pos), cap // 2)
    k_neg = min(len(neg), cap - k_pos)
    k_pos = min(len(pos), cap - k_neg)
    # random order within pos, masked ones first
    order = rng.permutation(pos)
    order = np.concatenate([order[masked[order]], order[~masked[order]]])
    sel = np.concatenate([order[:k_pos], rng.choice(neg, k_neg, replace=False)])
    return np.sort(sel)


def _channel_stats(x: torch.Tensor, chunk: int = 16384) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of (N, D) rows, accumulated in float64 chunk by chunk (no full
    float64 copy of a 100k-row matrix)."""
    n = x.shape[0]
    s = torch.zeros(x.shape[1], dtype=torch.float64)
    for i in range(0, n, chunk):
        s += x[i : i + chunk].double().sum(0)
    mean = s / n
    ss = torch.zeros_like(s)
    for i in range(0, n, chunk):
        ss += ((x[i : i + chunk].double() - mean) ** 2).sum(0)
    std = (ss / max(n - 1, 1)).sqrt()
    return mean.float(), std.float().clamp_min(1e-6)


def _std_stats(x: np.ndarray) -> tuple[float, float]:
    """(median, std) of held-out normal scores, used to put candidates on a common scale."""
    x = np.asarray(x, dtype=np.float64)
    sd = float(np.std(x)) if len(x) > 1 else 0.0
    return float(np.median(x)), max(sd, 1e-6 * max(1.0, abs(float(np.median(x)))))
