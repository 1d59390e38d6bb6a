"""``fit``: from labelled items to a Model, choosing everything by cross-validation on training data.

Pipeline (all loops bounded by counts; the clock is only a safety cap):
 1. Validate items; extract patch descriptors once per image (frozen backbone, eval-mode BN).
 2. Standardise channels on normal patches; build a bounded greedy-coreset memory bank of normal
    patches, each entry tagged with its source image.
 3. Out-of-fold (OOF) scores for training images: a normal image is scored with its own bank entries
    masked out (leave-one-image-out); anomalies are never in the bank, so their scores are OOF.
 4. Candidates: "oneclass" (max of the smoothed k-NN map), and when enough anomalies are labelled,
    "supervised" (logistic head on pooled descriptors, K-fold OOF), "combined" (mean of the two,
    each standardised by OOF normal scores) and, with masks, "patch" (max of the patch classifier's
    map, K-fold OOF). The best OOF AUROC wins; near-ties prefer combined, then oneclass (more robust
    to defect types absent from training).
 5. Threshold on the chosen candidate's OOF scores (Youden's J, or a normal-only rule).
 6. Segmentation: a patch classifier learnt from the masks (patch_head.py) gives the pixel map; its
    threshold maximises mean IoU on the training masks, and the IoU is reported by K-fold CV over
    the masked anomalies (threshold picked on the other folds, maps out-of-fold).
The test set, when given, is only evaluated -- never used for any choice.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from .backbone import load_pretrained_state_dict, trunk_state_dict
from .errors import EngineError
from .features import PatchFeatureExtractor
from .images import decode_mask, labelled_image, normalise_hex, parse_hex, working_size
from .memory import greedy_coreset, knn_distance
from .metrics import auroc
from .model import FORMAT, FORMAT_VERSION, Model
from .patch_head import PatchClassifier, patch_inputs
from .options import FitOptions
from .scoring import smooth, upsample
from .supervised import LinearHead
from .threshold import ScoreNormaliser, normal_only_threshold, youden_threshold
from .types import Item

_TIE = 0.005  # AUROC difference treated as a tie between candidates
_PREFERENCE = ("combined", "oneclass", "patch", "supervised")


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


class _Data:
    """Validated training data."""

    def __init__(self) -> None:
        self.images: list[np.ndarray] = []
        self.y: list[int] = []
        self.names: list[str] = []
        self.masks: list[np.ndarray | None] = []  # (H, W) label index maps
        self.labels: list[str] = []
        self.colours: list[str] = []


def _validate_label_colors(label_colors: Mapping[str, str] | None) -> tuple[list[str], list[str]]:
    if label_colors is None:
        return [], []
    if not isinstance(label_colors, Mapping):
        raise EngineError("label_colors must be a mapping of anomaly label -> '#RRGGBB'")
    labels, colours = [], []
    for name, colour in label_colors.items():
        if not isinstance(name, str) or not name.strip():
            raise EngineError(f"label_colors: label names must be non-empty strings, got {name!r}")
        if name.lower() == "background":
            raise EngineError("label_colors: 'background' is implicit (white/black); do not list it")
        c = normalise_hex(colour, f"label_colors[{name!r}]")
        if c in ("#FFFFFF", "#000000"):
            raise EngineError(f"label_colors[{name!r}]: {c} is reserved for background")
        if c in colours:
            raise EngineError(f"label_colors: colour {c} is used by two labels")
        labels.append(name)
        colours.append(c)
    return labels, colours


def _prepare(train: Sequence[Item], label_colors: Mapping[str, str] | None) -> _Data:
    if isinstance(train, (str, bytes)) or not isinstance(train, Sequence):
        raise EngineError("train must be a sequence of engine.Item")
    labels, colours = _validate_label_colors(label_colors)
    has_mask = any(isinstance(it, Item) and it.mask is not None and it.label is not None for it in train)
    if has_mask and not labels:
        raise EngineError("training items have masks, so label_colors (anomaly label -> '#RRGGBB') is required")
    palette = [parse_hex(c, "label colour") for c in colours]
    d = _Data()
    if has_mask:
        d.labels, d.colours = labels, colours
    ref: tuple[int, int] | None = None
    ref_name = ""
    for i, it in enumerate(train):
        checked = labelled_image(it, i, "training item")
        if checked is None:
            continue
        what, img = checked
        shape = img.shape[:2]
        if ref is None:
            ref, ref_name = shape, what
        elif shape != ref:
            raise EngineError(
                f"{what}: image is {shape[1]}x{shape[0]} but {ref_name} is {ref[1]}x{ref[0]}; all images "
                "of a dataset must have the same size"
            )
        mask = None
        if it.mask is not None and has_mask and it.label == "anomaly":
            mask = decode_mask(it.mask, shape, palette, what)
        d.images.append(img)
        d.y.append(1 if it.label == "anomaly" else 0)
        d.names.append(it.name)
        d.masks.append(mask)
    n_norm = d.y.count(0)
    if n_norm < 2:
        raise EngineError(
            f"training needs at least 2 images labelled 'normal' (got {n_norm}); the model learns what "
            "normal looks like from them"
        )
    return d


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


def _mask_to_grid(mask: np.ndarray, gh: int, gw: int, n_labels: int) -> np.ndarray:
    """(H, W) label index map -> (n_labels + 1, gh, gw) per-cell label coverage fractions."""
    t = torch.from_numpy(mask.astype(np.int64))
    onehot = torch.nn.functional.one_hot(t, n_labels + 1).permute(2, 0, 1).float().unsqueeze(0)
    return torch.nn.functional.adaptive_avg_pool2d(onehot, (gh, gw))[0].numpy()


def _resize_mask(mask: np.ndarray, h: int, w: int) -> np.ndarray:
    """Nearest-neighbour resize of a label index map."""
    rows = np.minimum((np.arange(h) * mask.shape[0]) // h, mask.shape[0] - 1)
    cols = np.minimum((np.arange(w) * mask.shape[1]) // w, mask.shape[1] - 1)
    return mask[rows[:, None], cols[None, :]]


def _best_pixel_threshold(maps: list[np.ndarray], gts: list[np.ndarray], candidates: np.ndarray) -> tuple[float, float]:
    """Threshold on raw distance maximising mean per-image IoU of (map >= t) vs (gt > 0)."""
    best_t, best = float(candidates[0]), -1.0
    for t in candidates:
        ious = []
        for m, g in zip(maps, gts):
            p = m >= t
            inter = np.count_nonzero(p & g)
            union = np.count_nonzero(p | g)
            ious.append(1.0 if union == 0 else inter / union)
        v = float(np.mean(ious))
        if v > best + 1e-12:
            best, best_t = v, float(t)
    return best_t, best


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
    clock = _Clock(opts.max_train_seconds, progress)
    clock.step(0.0, "validating images")
    data = _prepare(train, label_colors)
    rng = np.random.default_rng(opts.seed)
    y = np.array(data.y, dtype=np.int64)
    n = len(y)
    height, width = data.images[0].shape[:2]
    is_seg = bool(data.labels)

    # ---- 1. descriptors ------------------------------------------------------------------
    clock.step(0.02, "loading backbone")
    full_sd = load_pretrained_state_dict(opts.backbone, opts.backbone_weights)
    trunk = trunk_state_dict(opts.backbone, full_sd)
    del full_sd
    work = working_size(width, height, opts.resolution, opts.min_resolution)
    extractor = PatchFeatureExtractor(opts.backbone, trunk, work)
    gh, gw = extractor.grid
    n_patches = gh * gw
    has_mask = np.array([m is not None for m in data.masks], dtype=bool)
    cv_idx = _cv_subset(y, has_mask, opts.max_cv_images, rng)
    normals = np.flatnonzero(y == 0)
    per_image = min(n_patches, int(math.ceil(opts.max_bank_candidates / len(normals))))
    # Preallocated buffers: one allocation each instead of thousands of small ones, which keeps the
    # allocator from fragmenting (RSS on 1,000 images dropped by ~1 GB).
    n_cand = len(normals) * per_image
    cand_t: torch.Tensor | None = None
    origin = np.repeat(normals, per_image)
    keep_row = {int(i): r for r, i in enumerate(cv_idx.tolist())}
    kept: torch.Tensor | None = None
    pooled_mean = pooled_max = None
    c = 0
    bs = 2
    for s in range(0, n, bs):
        f = extractor(data.images[s : s + bs], batch_size=bs)
        if cand_t is None:
            d = f.shape[1]
            cand_t = torch.empty(n_cand, d)
            kept = torch.empty(len(cv_idx), d, gh, gw)
            pooled_mean, pooled_max = torch.empty(n, d), torch.empty(n, d)
        flat = f.flatten(2)
        pooled_mean[s : s + f.shape[0]] = flat.mean(2)
        pooled_max[s : s + f.shape[0]] = flat.amax(2)
        for j in range(f.shape[0]):
            i = s + j
            if y[i] == 0:
                pick = rng.choice(n_patches, per_image, replace=False) if per_image < n_patches else np.arange(n_patches)
                cand_t[c : c + per_image] = flat[j][:, torch.from_numpy(np.sort(pick))].T
                c += per_image
            if i in keep_row:
                kept[keep_row[i]] = f[j]
        clock.step(0.05 + 0.5 * min(s + bs, n) / n, f"extracting features ({min(s + bs, n)}/{n})")

    # ---- 2. standardisation + memory bank --------------------------------------------------
    mu, sd = _channel_stats(cand_t)
    cand_t.sub_(mu).div_(sd)
    m = min(opts.memory_bank_size, len(cand_t))
    sel = greedy_coreset(cand_t, m, opts.seed)
    bank = cand_t[sel].contiguous()
    bank_origin = torch.from_numpy(origin[sel.numpy()])
    del cand_t
    bank_sq = (bank * bank).sum(1)
    clock.step(0.65, "memory bank built")

    def std_feats(i: int) -> torch.Tensor:
        return (kept[keep_row[i]] - mu.view(-1, 1, 1)) / sd.view(-1, 1, 1)

    # ---- 3. out-of-fold one-class maps -----------------------------------------------------
    raw_maps: dict[int, torch.Tensor] = {}
    oof_maps: dict[int, torch.Tensor] = {}
    for i in cv_idx.tolist():
        q = std_feats(i).flatten(1).T.contiguous()
        excl = (bank_origin == i) if y[i] == 0 else None
        if excl is not None and bool(excl.all()):
            excl = None  # cannot happen with >= 2 normals and a full-size bank
        raw_maps[i] = knn_distance(q, bank, bank_sq, exclude=excl).view(gh, gw)
        oof_maps[i] = smooth(raw_maps[i][None], opts.map_sigma)[0]
    clock.step(0.72, "cross-validated one-class scores")
    oc = np.array([float(oof_maps[i].max()) for i in cv_idx], dtype=np.float64)
    ycv = y[cv_idx]
    n_pos, n_neg = int(ycv.sum()), int((1 - ycv).sum())

    # ---- 3b. patch classifier on the masks (segmentation) ---------------------------------
    masked = [i for i in cv_idx.tolist() if has_mask[i]]
    patch_maps: dict[int, torch.Tensor] | None = None
    patch_clf: PatchClassifier | None = None
    if is_seg and len(masked) >= 2:
        patch_rows = _patch_rows(cv_idx, y, data.masks, std_feats, raw_maps, oof_maps, gh, gw,
                                 len(data.labels), opts, rng)
        def inputs_of(i: int) -> np.ndarray:
            return patch_inputs(std_feats(i)[None], raw_maps[i][None], oof_maps[i][None])

        patch_maps = _patch_oof(cv_idx, y, has_mask, patch_rows, inputs_of, len(data.labels), opts, gh, gw)
        px, pt = _stack_rows(patch_rows, cv_idx.tolist())
        if len(np.unique(pt[pt >= 0])) >= 2:
            patch_clf = PatchClassifier.fit(px[pt >= 0], pt[pt >= 0], len(data.labels))
        else:
            patch_maps = None
        clock.step(0.8, "cross-validated patch classifier")

    # ---- 4. candidates ----------------------------------------------------------------------
    pooled_all = torch.cat([(pooled_mean - mu) / sd, (pooled_max - mu) / sd], 1).double().numpy()
    scores: dict[str, np.ndarray] = {"oneclass": oc}
    enough = n_pos >= opts.min_anomalies_for_supervised and n_neg >= opts.min_anomalies_for_supervised
    combo = None
    if enough:
        from sklearn.model_selection import StratifiedKFold

        folds = min(opts.cv_folds, n_pos, n_neg)
        skf = StratifiedKFold(folds, shuffle=True, random_state=opts.seed)
        xcv = pooled_all[cv_idx]
        sup = np.zeros(len(cv_idx))
        for tr, te in skf.split(xcv, ycv):
            sup[te] = LinearHead.fit(xcv[tr], ycv[tr], opts.seed).logit(xcv[te])
        scores["supervised"] = sup
        oc_c, oc_s = _std_stats(oc[ycv == 0])
        sp_c, sp_s = _std_stats(sup[ycv == 0])
        combo = {"oc_center": oc_c, "oc_scale": oc_s, "sup_center": sp_c, "sup_scale": sp_s}
        scores["combined"] = 0.5 * ((oc - oc_c) / oc_s + (sup - sp_c) / sp_s)
        clock.step(0.86, "cross-validated supervised head")
    if patch_maps is not None and len(masked) >= opts.min_anomalies_for_supervised and n_neg >= 2:
        scores["patch"] = np.array([float(patch_maps[i].max()) for i in cv_idx], dtype=np.float64)
    aucs = {k: auroc(ycv, v) for k, v in scores.items()}
    if n_pos > 0:
        best = max(a for a in aucs.values() if a is not None)
        candidate = next(c for c in _PREFERENCE if c in aucs and aucs[c] is not None and aucs[c] >= best - _TIE)
    else:
        candidate = "oneclass"
    raw = scores[candidate]

    # ---- 5. thresholds ----------------------------------------------------------------------
    neg, pos = raw[ycv == 0], raw[ycv == 1]
    t_img = youden_threshold(neg, pos) if n_pos > 0 else normal_only_threshold(neg)
    image_norm = ScoreNormaliser.fit(t_img, neg, pos)
    oof_pred = raw >= t_img
    tp = int((oof_pred & (ycv == 1)).sum())
    fp = int((oof_pred & (ycv == 0)).sum())
    fn = int((~oof_pred & (ycv == 1)).sum())
    report: dict = {
        "n_train": n,
        "n_normal": int((y == 0).sum()),
        "n_anomaly": int((y == 1).sum()),
        "n_masked": int(has_mask.sum()),
        "n_cv_images": int(len(cv_idx)),
        "work_size": list(work),
        "grid": [gh, gw],
        "memory_bank": int(m),
        "cv_auroc": aucs,
        "candidate": candidate,
        "threshold": float(t_img),
        "cv_f1": (2 * tp / (2 * tp + fp + fn)) if (2 * tp + fp + fn) else None,
        "seg_iou_cv": None,
    }

    # Pixel maps. Classification: the one-class map with the one-class image threshold (the
    # verdict of a one-class model is "some smoothed cell >= threshold", so map and verdict agree).
    map_source = oof_maps
    oc_neg, oc_pos = oc[ycv == 0], oc[ycv == 1]
    t_pix = youden_threshold(oc_neg, oc_pos) if n_pos > 0 else normal_only_threshold(oc_neg)
    pix_pos = oc_pos
    # Segmentation: the patch-classifier map (one-class map if too few masks), thresholded where
    # it best reproduces the training masks, with the IoU reported by K-fold CV.
    if is_seg and masked:
        if patch_maps is not None:
            map_source = patch_maps
        wh, ww = work[1], work[0]
        maps = {i: upsample(map_source[i][None], wh, ww)[0].numpy() for i in masked}
        gts = {i: _resize_mask(data.masks[i], wh, ww) > 0 for i in masked}
        allv = np.concatenate([maps[i].ravel() for i in masked])
        cands = np.unique(np.quantile(allv, np.linspace(0.5, 0.999, 60)))
        t_pix, _ = _best_pixel_threshold([maps[i] for i in masked], [gts[i] for i in masked], cands)
        pix_pos = np.concatenate([maps[i][gts[i]] for i in masked])
        report["seg_iou_cv"] = _seg_cv(masked, maps, gts, cands, cv_idx, oof_pred, opts)
        clock.step(0.9, "segmentation threshold")
    normal_pixels = np.concatenate([map_source[i].flatten().numpy() for i in cv_idx if y[i] == 0])
    pixel_norm = ScoreNormaliser.fit(t_pix, normal_pixels, pix_pos if len(pix_pos) else None)

    # ---- assemble (final heads are refit on all training images) ---------------------------
    tensors: dict[str, torch.Tensor] = {f"trunk.{k}": v for k, v in trunk.items()}
    tensors["feat_mean"] = mu.contiguous()
    tensors["feat_std"] = sd.contiguous()
    tensors["bank"] = bank
    config: dict = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "backbone": opts.backbone,
        "image_size": [int(width), int(height)],
        "work_size": [int(work[0]), int(work[1])],
        "map_sigma": float(opts.map_sigma),
        "is_segmentation": is_seg,
        "labels": data.labels,
        "colours": data.colours,
        "candidate": candidate,
        "image_norm": image_norm.to_dict(),
        "pixel_norm": pixel_norm.to_dict(),
        "pixel_source": "patch" if map_source is patch_maps else "oneclass",
        "options": opts.to_dict(),
    }
    if candidate in ("supervised", "combined"):
        head = LinearHead.fit(pooled_all, y, opts.seed)
        tensors["head_mean"] = torch.from_numpy(head.mean.copy())
        tensors["head_scale"] = torch.from_numpy(head.scale.copy())
        tensors["head_coef"] = torch.from_numpy(head.coef.copy())
        config["head_intercept"] = head.intercept
        if candidate == "combined":
            config["combo"] = combo
    if patch_clf is not None:
        tensors["patch_mean"] = torch.from_numpy(patch_clf.mean.copy())
        tensors["patch_scale"] = torch.from_numpy(patch_clf.scale.copy())
        tensors["patch_coef"] = torch.from_numpy(patch_clf.coef.copy())
        tensors["patch_intercept"] = torch.from_numpy(patch_clf.intercept.copy())
    clock.step(0.95, "model assembled")
    report["timings_s"] = dict(clock.marks)
    config["training"] = report
    model = Model(config, tensors, extractor=extractor)
    # The model exists now: evaluation is not subject to the training-time cap.
    if test is not None:
        clock.step(0.96, "evaluating test set", check=False)
        model.test_metrics = model.evaluate(test)
    clock.step(1.0, "done", check=False)
    report["timings_s"] = dict(clock.marks)
    model.training_report = report
    model.config["training"] = report
    return model


def _patch_rows(cv_idx, y, masks, std_feats, raw_maps, oof_maps, gh, gw, n_labels, opts, rng):
    """Per image: (inputs, targets) rows for the patch classifier.

    Normal images: all cells background. Masked anomalies: a cell is label l if >= 50% covered by
    l, background if untouched, and left out if partly covered (ambiguous borders). Unmasked
    anomalies contribute nothing (we do not know where the defect is). Background cells are
    subsampled per image (seeded) to bound the training set.
    """
    n_imgs = len(cv_idx)
    neg_cap = max(32, 8000 // max(n_imgs, 1))
    rows = {}
    for i in cv_idx.tolist():
        if y[i] == 1 and masks[i] is None:
            continue
        x = patch_inputs(std_feats(i)[None], raw_maps[i][None], oof_maps[i][None])
        if masks[i] is None:
            t = np.zeros(gh * gw, dtype=np.int64)
        else:
            cov = _mask_to_grid(masks[i], gh, gw, n_labels).reshape(n_labels + 1, -1)
            lab = cov[1:].argmax(0)
            best = cov[1:].max(0)
            # Cells >= 50% covered are positives; a defect thinner than half a cell everywhere
            # still contributes its best-covered cells.
            cut = min(0.5, 0.5 * float(best.max())) if best.max() > 0 else 0.5
            t = np.where(best >= cut, lab + 1, np.where(cov[0] >= 0.999, 0, -1))
        bg = np.flatnonzero(t == 0)
        if len(bg) > neg_cap:
            bg = np.sort(rng.choice(bg, neg_cap, replace=False))
        sel = np.concatenate([bg, np.flatnonzero(t > 0)])
        rows[i] = (x[sel], t[sel])
    return rows


def _stack_rows(rows, idx):
    xs = [rows[i][0] for i in idx if i in rows]
    ts = [rows[i][1] for i in idx if i in rows]
    return np.concatenate(xs), np.concatenate(ts)


def _patch_oof(cv_idx, y, has_mask, rows, inputs_of, n_labels, opts, gh, gw) -> dict[int, torch.Tensor]:
    """Out-of-fold smoothed anomaly-logit maps of every CV image (stratified K-fold over images)."""
    from sklearn.model_selection import StratifiedKFold

    ids = np.asarray(cv_idx)
    strata = y[ids] * 2 + has_mask[ids]
    n_min = min(int((strata == s).sum()) for s in np.unique(strata))
    k = max(2, min(opts.cv_folds, 3, n_min)) if n_min >= 2 else 2  # 3 folds: cost vs. OOF quality
    if n_min < 2:
        strata = y[ids]
    skf = StratifiedKFold(k, shuffle=True, random_state=opts.seed)
    out: dict[int, torch.Tensor] = {}
    for tr, te in skf.split(ids, strata):
        tr_ids = [int(i) for i in ids[tr] if int(i) in rows]
        x, t = _stack_rows(rows, tr_ids)
        if len(np.unique(t[t >= 0])) < 2:
            clf = None
        else:
            clf = PatchClassifier.fit(x[t >= 0], t[t >= 0], n_labels)
        for i in ids[te].tolist():
            if clf is None:
                out[i] = torch.zeros(gh, gw)
                continue
            xi = inputs_of(i)
            logit, _ = clf.anomaly_logit(xi)
            out[i] = smooth(torch.from_numpy(logit.astype(np.float32)).view(1, gh, gw), opts.map_sigma)[0]
    return out


def _seg_cv(masked, maps, gts, cands, cv_idx, oof_pred, opts) -> dict:
    """K-fold CV of the pixel threshold over masked anomalies: pick t on the other folds, measure
    IoU on the held-out fold (a held-out image judged normal by its OOF score gets an empty mask)."""
    pred_of = {int(i): bool(p) for i, p in zip(cv_idx, oof_pred)}
    masked = list(masked)
    k = min(opts.cv_folds, len(masked))
    if k < 2:
        return {"mean_iou": None, "folds": 0}
    order = np.random.default_rng(opts.seed + 1).permutation(len(masked))
    ious = []
    for f in range(k):
        te = [masked[j] for j in order[f::k]]
        tr = [i for i in masked if i not in te]
        t, _ = _best_pixel_threshold([maps[i] for i in tr], [gts[i] for i in tr], cands)
        for i in te:
            p = (maps[i] >= t) if pred_of.get(i, True) else np.zeros_like(gts[i])
            inter = np.count_nonzero(p & gts[i])
            union = np.count_nonzero(p | gts[i])
            ious.append(1.0 if union == 0 else inter / union)
    return {"mean_iou": float(np.mean(ious)), "folds": k, "images": len(ious)}
