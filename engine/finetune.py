"""The "finetuned" candidate: the backbone's upper stages trained on the labelled images.

Frozen ImageNet features separate some defects poorly (thin low-contrast cracks, defects on textures
unlike ImageNet's); with labelled anomalies the features themselves can adapt. What is trained:

* the stages above the trunk's base stage up to the coarsest patch level (Lite0: stages 2-4, so the
  finest patch level adapts too: ``backbone.BASE_STAGE``), initialised from the pretrained weights,
  fed with the base stage's features computed once by the frozen stem (so an epoch costs the upper
  part of the network only);
* an image head (linear on [mean, max]-pooled output) and a 1x1 segmentation head on the output grid.

Mixed supervision: every labelled image trains the image head; images with a mask also train the
segmentation head cell by cell, and its maximum is pushed towards the image label. When most
anomalies have masks, a network's score is its image logit plus that maximum (``learned_from_masks``).
Augmentation: each step shows its batch as it is, flipped left-right, upside down or both. The
base-stage features of the four views are computed once per image by the frozen stem
(``flipped_views``). Flipping the cached feature maps instead, as until round 15, is not the same: the
stem's oriented kernels make stem(flip(image)) differ from flip(stem(image)), so three of four training
inputs were maps no real image produces, while the deployed networks only ever see real ones. On
KolektorSDD's official split (ten seeds each, labels only / masks), the stem's own views took test
errors from 33 / 22 to 21 / 12 and the mean test F1 from 0.924 / 0.947 to 0.952 / 0.973 (BENCHMARKS,
engine v3 round 15).

The candidate is K networks, one per cross-validation fold (K per repetition when the
cross-validation is repeated, ``out_of_fold``). Each image's out-of-fold score comes from the network
that did not see it, and the deployed scorer is the mean of all the networks' scores:
a new image is unseen by all of them, so the threshold chosen on out-of-fold scores keeps its
meaning -- a network refit on all images would be more confident on new images than any fold network
was, and the threshold would not transfer. The mean of K networks is still steadier than any one of
them: on KolektorSDD's official split, with each network scaled by its held-out normals' upper
spread (q90 - median, the calibration until round 7), the deployed mean's test normals had an upper
spread of 0.59-1.09 (below 1 on 12 of 15 runs) against 1 by construction for one network's held-out
normals (BENCHMARKS, engine v3 round 6), so where new parts resemble the training parts the
out-of-fold figures tend to understate the deployed scorer rather than flatter it. Training is
seeded and bounded by step counts, so it is reproducible on one machine with one torch thread count.
Another thread count splits the convolutions' sums differently, the rounding differs, and the
networks end elsewhere: KolektorSDD labels only, seed 0, upper-spread calibration, test F1 0.933 at
2 threads and 0.878 at 1 (BENCHMARKS, engine v3 round 7), as far apart as two seeds.

Each network's logit is put in units of its own held-out normals (``held_out_normal_stats``: median
and a robust standard deviation, Qn, of the normals of its fold) before anything is pooled or
averaged. Fold networks trained from different batches end on different logit scales (KolektorSDD
labels only, seed 0: held-out normals' medians -7.6 / -4.7 / -6.5, upper spreads 2.5 / 1.6 / 2.5), so
raw out-of-fold logits pooled three scales into one threshold choice, and a network whose normals sat
high supplied all the "false positives" the threshold was placed against; the deployed mean was on
yet another scale.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .backbone import Trunk, stages_between, upper_stages, weights_as_inputs
from .features import PatchFeatureExtractor
from .segmentation import mask_to_grid
from .threshold import held_out_normal_stats

_BATCH_HALF = 4  # each step sees this many anomalies and this many normals
_LR_UPPER = 3e-4  # pretrained stages: small steps keep what ImageNet taught them
_LR_HEADS = 3e-3
_WEIGHT_DECAY = 1e-2
_POS_WEIGHT = 10.0  # defect cells are rare: weight them up in the cell loss
_DEFECT_COVER = 0.1  # a cell counts as defect when the mask covers at least this fraction of it
# The cell head joins the image score when at least this share of the labelled anomalies has a mask:
# then its maximum was trained towards the image label on most of them (``learned_from_masks``).
_MASKED_SHARE_FOR_CELLS = 0.5
# Repetition r of the cross-validation draws its folds and networks from seed + this * r: farther apart
# than any fold count, so no two networks of one fit share a seed.
_REPEAT_SEED_STEP = 1000
# The views fine-tuning trains on: view v flips left-right when bit 0 is set, upside down when bit 1 is.
FLIP_VIEWS = 4


class FineTunedNet(nn.Module):
    """Upper stages + image head + segmentation head."""

    def __init__(self, upper: nn.Module) -> None:
        super().__init__()
        self.upper = upper
        # The stages' output channels: those of their last convolution (Lite0's projection, a
        # ResNet block's last conv), so no backbone needs a table of widths.
        channels = [m.out_channels for m in upper.modules() if isinstance(m, nn.Conv2d)][-1]
        self.seg = nn.Conv2d(channels, 1, 1)
        self.cls = nn.Linear(2 * channels, 1)

    def forward(self, base: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C0, h, w) base-stage features -> (image logits (B,), cell logits (B, h', w'))."""
        h = self.upper(base)
        pooled = torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1)
        return self.cls(pooled)[:, 0], self.seg(h)[:, 0]


class _FoldLogits(nn.Module):
    """The fold networks as one module (what gets traced): each network's image logit and the maximum
    of its cell logits, (B, K, 2). Both are always computed, so one traced graph serves models that
    score with the cell head and models that do not. ``lead``: frozen trunk stages run once before the
    networks, from the trunk's base stage to the networks' input (``FineTuned.restore``)."""

    def __init__(self, nets: Sequence[FineTunedNet], lead: nn.Module) -> None:
        super().__init__()
        self.nets = nn.ModuleList(nets)
        self.lead = lead

    def forward(self, base: torch.Tensor) -> torch.Tensor:  # noqa: D102
        base = self.lead(base)
        pairs = []
        for net in self.nets:
            image, cells = net(base)
            pairs.append(torch.stack([image, cells.flatten(1).amax(1)], 1))
        return torch.stack(pairs, 1)


class FineTuned:
    """The deployed candidate: the fold networks, scored as the mean of their calibrated logits.

    ``calibration`` holds each network's (centre, scale) from its held-out normals (module
    docstring); (0, 1) for each leaves the raw logits (artifacts written before calibration).
    ``cells_in_score``: a network's logit is its image logit plus the maximum of its cell logits
    (``learned_from_masks``); otherwise the image logit alone (and in artifacts written before it).
    ``input_stage``: the trunk stage whose output the networks take (saved with them); ``lead``, the
    frozen stages that bring the trunk's base-stage features there (identity when they are equal)."""

    def __init__(self, nets: Sequence[FineTunedNet], calibration: Sequence[tuple[float, float]] | None = None,
                 cells_in_score: bool = False, *, input_stage: int, lead: nn.Module | None = None) -> None:
        self.nets = list(nets)
        self.cells_in_score = bool(cells_in_score)
        self.input_stage = int(input_stage)
        self.calibration = [(float(c), float(s)) for c, s in calibration] if calibration is not None else \
            [(0.0, 1.0)] * len(self.nets)
        if len(self.calibration) != len(self.nets):
            raise ValueError("one (centre, scale) per fold network")
        self._logits = _FoldLogits(self.nets, lead if lead is not None else nn.Sequential()).eval()
        self._traced: dict[tuple[str, int, int], Callable[[torch.Tensor], torch.Tensor] | None] = {}
        self._lock = threading.Lock()

    @property
    def score_name(self) -> str:
        """What a network's logit is, for the training report."""
        return "image logit + maximum of the cell head" if self.cells_in_score else "image logit"

    def to(self, device: torch.device) -> FineTuned:
        """Move every network to ``device``."""
        self._logits.to(device)
        self._traced.clear()
        return self

    def image_scores(self, base: torch.Tensor) -> np.ndarray:
        """Mean calibrated logit of the fold networks for base-stage features ``base``."""
        return self.network_scores(base).mean(1)

    @torch.inference_mode()
    def network_scores(self, base: torch.Tensor) -> np.ndarray:
        """(B, K): each fold network's calibrated logit for base-stage features ``base``, the terms
        of ``image_scores``' mean (the splits bench keeps them: an out-of-fold score comes from one
        network, a deployed score from all of them).

        Runs a traced graph per input size, shared by every model of the same shape with the weights
        as its inputs (``weights_as_inputs``: a trace per model, frozen or not, stayed in memory for
        the life of the process, ~20 MB per model load); eager if tracing is unavailable."""
        key = (str(base.device), int(base.shape[-2]), int(base.shape[-1]))
        with self._lock:  # concurrent first predictions trace once
            if key not in self._traced:
                self._traced[key] = weights_as_inputs(self._logits, base[:1])
            scorer = self._traced[key] or self._logits
        pairs = scorer(base).double().cpu().numpy()
        logits = pairs[..., 0] + pairs[..., 1] if self.cells_in_score else pairs[..., 0]
        centre, scale = np.array(self.calibration).T
        result: np.ndarray = (logits - centre) / scale
        return result

    def state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        """Serialised form (see state.py): every fold network's parameters under ``<fold>.<name>``."""
        tensors = {f"{k}.{name}": value.detach().cpu() for k, net in enumerate(self.nets)
                   for name, value in net.state_dict().items()}
        return {"folds": len(self.nets), "calibration": [list(cs) for cs in self.calibration],
                "cells_in_score": self.cells_in_score, "input_stage": self.input_stage}, tensors

    @classmethod
    def restore(cls, config: dict, tensors: dict[str, torch.Tensor], trunk: Trunk) -> FineTuned:
        """Inverse of ``state``; the network shape comes from the model's own (frozen) trunk.

        Networks of artifacts written before ``input_stage`` was saved start from the finest patch level;
        the model hands them the trunk's base stage, so the frozen stages in between run first."""
        stage = int(config.get("input_stage", trunk.levels[0]))
        if not trunk.base_stage <= stage < trunk.levels[-1]:
            raise ValueError(f"fine-tuned networks start at stage {stage}, outside this trunk's "
                             f"{trunk.base_stage}-{trunk.levels[-1] - 1}")
        nets = []
        for k in range(int(config["folds"])):
            net = FineTunedNet(upper_stages(trunk, stage))
            prefix = f"{k}."
            net.load_state_dict({n[len(prefix):]: v for n, v in tensors.items() if n.startswith(prefix)})
            nets.append(net.eval())
        return cls(nets, config.get("calibration"), bool(config.get("cells_in_score", False)), input_stage=stage,
                   lead=stages_between(trunk, trunk.base_stage, stage))


def cell_targets(masks: Sequence[np.ndarray | None], labels: np.ndarray, n_labels: int,
                 grid: tuple[int, int]) -> torch.Tensor:
    """(N, h, w) cell targets on the fine-tuned output grid: 1 defect, 0 background, -1 unknown
    (an anomaly without a mask: only its image label is known)."""
    gh, gw = grid
    out = torch.full((len(labels), gh, gw), -1.0)
    for i, (mask, label) in enumerate(zip(masks, labels, strict=True)):
        if label == 0:
            out[i] = 0.0
        elif mask is not None:
            cover = 1.0 - mask_to_grid(mask, gh, gw, n_labels)[0]
            out[i] = torch.from_numpy((cover >= _DEFECT_COVER).astype(np.float32))
    return out


def flip_image(image: np.ndarray, view: int) -> np.ndarray:
    """View ``view`` (``FLIP_VIEWS``) of an (H, W, ...) image."""
    if view & 1:
        image = image[:, ::-1]
    if view & 2:
        image = image[::-1]
    return np.ascontiguousarray(image)


def flip_maps(maps: torch.Tensor, view: int) -> torch.Tensor:
    """View ``view`` (``FLIP_VIEWS``) of (..., H, W) maps: images, cell targets."""
    dims = [d for bit, d in ((1, -1), (2, -2)) if view & bit]
    return maps.flip(dims) if dims else maps


def flipped_views(extractor: PatchFeatureExtractor, images: Sequence[np.ndarray], base: torch.Tensor,
                  batch_size: int = 2) -> torch.Tensor:
    """(N, FLIP_VIEWS, C0, h, w): each image's base-stage features ``base`` (N, C0, h, w) and those
    of its flipped views, computed by the frozen stem -- what ``train_net`` trains on (module docstring)."""
    views = torch.empty(len(images), FLIP_VIEWS, *base.shape[1:])
    views[:, 0] = base
    for view in range(1, FLIP_VIEWS):
        for s in range(0, len(images), batch_size):
            flipped = extractor.base([flip_image(im, view) for im in images[s : s + batch_size]], batch_size)
            views[s : s + len(flipped), view] = flipped.cpu()
    return views


def train_net(trunk: Trunk, views: torch.Tensor, labels: np.ndarray, cells: torch.Tensor,
              epochs: int, seed: int, device: torch.device) -> FineTunedNet:
    """One network trained on the images' ``views`` (``flipped_views``: CPU, (N, FLIP_VIEWS, C0, h, w))
    with image ``labels`` and ``cells`` targets (see ``cell_targets``). Deterministic for a given seed,
    device and thread count."""
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = FineTunedNet(upper_stages(trunk)).to(device)
    gen = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(
        [{"params": net.upper.parameters(), "lr": _LR_UPPER},
         {"params": [*net.seg.parameters(), *net.cls.parameters()], "lr": _LR_HEADS}],
        weight_decay=_WEIGHT_DECAY)
    y = torch.from_numpy(labels.astype(np.float32))
    pos_weight = torch.tensor(_POS_WEIGHT, device=device)
    steps = int(epochs) * max(1, len(labels) // (2 * _BATCH_HALF))
    for _ in range(steps):
        pick = torch.cat([torch.from_numpy(pos)[torch.randint(len(pos), (_BATCH_HALF,), generator=gen)],
                          torch.from_numpy(neg)[torch.randint(len(neg), (_BATCH_HALF,), generator=gen)]])
        flips = torch.rand(2, generator=gen)
        view = int(flips[0] < 0.5) + 2 * int(flips[1] < 0.5)
        x, t = views[pick, view], flip_maps(cells[pick], view)
        # channels_last: oneDNN's fast layout on CPU (training steps ~40% faster than NCHW).
        x = x.to(device).contiguous(memory_format=torch.channels_last)
        t, yb = t.to(device), y[pick].to(device)
        image_logit, cell_logit = net(x)
        loss = F.binary_cross_entropy_with_logits(image_logit, yb)
        known = t >= 0
        if bool(known.any()):
            loss = loss + F.binary_cross_entropy_with_logits(cell_logit[known], t[known], pos_weight=pos_weight)
            masked = known.flatten(1).any(1)
            loss = loss + F.binary_cross_entropy_with_logits(cell_logit.flatten(1).amax(1)[masked], yb[masked])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return net.eval()


def learned_from_masks(cells: torch.Tensor, labels: np.ndarray) -> bool:
    """Whether the networks' image score should add the maximum of their cell head: true when most
    labelled anomalies have masks (``cell_targets``: their cells are known).

    With masks the cell head sees where each defect is, and its maximum is trained towards the image
    label, so it is a second, localised verdict. KolektorSDD with masks (scratch runs, 3 fold networks,
    the test parts never seen): image logit + cell maximum had the higher test AUROC on 10 of 11
    seed-and-split runs (official split, seeds 0-5: 0.9986-1.0 against 0.998-0.999; the split reversed,
    trained on the official test parts, seeds 0-4: 0.992-0.997 against 0.988-0.996) and a mean test F1
    at the chosen threshold of 0.927 against 0.920 and 0.897 against 0.874. Without masks the cell head
    has only ever seen normal cells, and its maximum means nothing."""
    anomalies = labels == 1
    if not bool(anomalies.any()):
        return False
    masked = (cells[torch.from_numpy(anomalies)] >= 0).flatten(1).all(1)
    return float(masked.float().mean()) >= _MASKED_SHARE_FOR_CELLS


def repeat_seed(seed: int, repeat: int) -> int:
    """The seed of one repetition of the cross-validation: its fold partition is drawn from it and
    its fold networks are seeded from it (+ k for fold k), so repetition 0 is the single run."""
    return seed + _REPEAT_SEED_STEP * repeat


def out_of_fold(trunk: Trunk, views: torch.Tensor, labels: np.ndarray, cells: torch.Tensor,
                partitions: Sequence[Sequence[tuple[np.ndarray, np.ndarray]]], epochs: int, seed: int,
                device: torch.device, progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, FineTuned]:
    """One network per (train, held-out) fold of each partition, trained on the images' ``views``
    (``flipped_views``) and scored on the held-out images as they are (the caller draws partition r from
    ``repeat_seed(seed, r)``, holding out whole near-duplicate groups): each image's calibrated
    score from the networks that did not see it, averaged over the partitions, and all the networks
    together (the deployed candidate), each calibrated on its own held-out normals.

    More than one partition (``FitOptions.finetune_repeats``) is a seed ensemble: every image's
    out-of-fold score and the deployed mean average networks from different batches and different
    folds. On KolektorSDD with labels only, two trainings with different seeds then disagreed less
    (three splits: expected spread of three seeds' test F1 down 28-45%); with masks the gain was
    smaller and not uniform (BENCHMARKS, engine v3 round 8). Each partition costs one partition's
    training and networks per prediction."""
    totals = np.zeros(len(labels), dtype=np.float64)
    nets, calibration = [], []
    with_cells = learned_from_masks(cells, labels)
    for r, folds in enumerate(partitions):
        for k, (train, held) in enumerate(folds):
            net = train_net(trunk, views[train], labels[train], cells[train], epochs, repeat_seed(seed, r) + k, device)
            held_base = views[held, 0].contiguous(memory_format=torch.channels_last).to(device)
            raw = FineTuned([net], cells_in_score=with_cells, input_stage=trunk.base_stage).image_scores(held_base)
            # Stratified folds hold out normals in every fold; (0, 1) keeps raw logits if one did not.
            held_normals = raw[labels[held] == 0]
            centre, scale = held_out_normal_stats(held_normals) if len(held_normals) else (0.0, 1.0)
            totals[held] += (raw - centre) / scale
            nets.append(net)
            calibration.append((centre, scale))
            if progress is not None:
                progress(len(nets))
    return totals / max(1, len(partitions)), FineTuned(nets, calibration, with_cells, input_stage=trunk.base_stage)
