"""The trained model: inference, evaluation and persistence.

A Model is fully described by a JSON-safe ``config`` dict and a dict of named tensors. Each part of
the model owns its serialisation (``state``/``from_state``, see state.py); this module only says which
parts a model has. ``fit`` and ``load_model`` both construct a Model from the same two dicts, which is
what makes the save/load round trip bit-exact.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import artifact
from .device import resolve_device
from .errors import EngineError
from .features import PatchFeatureExtractor, pooled
from .finetune import FineTuned
from .images import decode_mask, defect_pixels, labelled_image, parse_hex, to_rgb_uint8
from .memory import MemoryBank
from .metrics import Metrics, PixelAurocAccumulator, SegmentationAccumulator, classification_metrics
from .options import CANDIDATES
from .patch_head import PatchClassifier, patch_inputs
from .scoring import smooth, upsample
from .segmentation import label_regions, render
from .state import own, put, take
from .supervised import LinearHead
from .threshold import ScoreNormaliser
from .types import Item, Prediction


class Model:
    """A trained anomaly detector (classification, or segmentation when trained with masks).

    Attributes:
        image_size: (width, height) the model was trained on; predict() requires exactly this size.
        is_segmentation: True when trained with masks; predictions then carry mask/anomalies.
        label_colors: anomaly label -> "#RRGGBB" (empty for classification).
        candidate: the image scorer training chose (one of ``CANDIDATES``).
        device: where the backbone and the memory bank compute (a run-time choice, not saved).
        test_metrics: metrics on the test items given to fit(), if any.
        training_report: what training chose and why (see ``report``).

    """

    def __init__(self, config: dict[str, Any], tensors: dict[str, torch.Tensor],
                 extractor: PatchFeatureExtractor | None = None, device: str | torch.device | None = None) -> None:
        self.config = config
        # Own, freshly allocated (64-byte aligned) copies: MKL's results can depend on memory
        # alignment, and safetensors buffers are not aligned like torch's allocator -- without
        # this a loaded model could differ from the fitted one in the last bit.
        self.tensors = {k: v.clone(memory_format=torch.contiguous_format) for k, v in tensors.items()}
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.image_size: tuple[int, int] = (int(config["image_size"][0]), int(config["image_size"][1]))
        self.is_segmentation = bool(config["is_segmentation"])
        self._labels: list[str] = list(config["labels"])
        self._colours: list[str] = list(config["colours"])
        self.label_colors: dict[str, str] = dict(zip(self._labels, self._colours, strict=True))
        self.test_metrics: Metrics | None = None
        self.training_report: dict[str, Any] = dict(config.get("training", {}))
        self.candidate: str = config["candidate"]
        if self.candidate not in CANDIDATES:
            raise EngineError(f"model artifact has unknown candidate {self.candidate!r}")

        trunk = {k[len("trunk."):]: v for k, v in self.tensors.items() if k.startswith("trunk.")}
        # fit() hands over its (already traced) extractor built from the very same trunk tensors.
        if extractor is None or extractor.device != self.device:
            extractor = PatchFeatureExtractor(config["backbone"], trunk, tuple(config["work_size"]), self.device)
        self._extractor = extractor
        heads = config["heads"]
        bank = take("bank", MemoryBank, heads, self.tensors)
        if bank is None:
            raise EngineError("model artifact lacks its memory bank")
        self._bank = bank if self.device.type == "cpu" else bank.to(self.device)
        self._head = take("supervised", LinearHead, heads, self.tensors)
        self._patch = take("patch", PatchClassifier, heads, self.tensors)
        self._combo: dict[str, float] | None = heads.get("combined")
        self._finetuned = (FineTuned.restore(heads["finetuned"], own("finetuned", self.tensors),
                                             self._extractor.trunk).to(self.device)
                           if "finetuned" in heads else None)
        self._sigma = float(config["map_sigma"])
        self._image_norm = ScoreNormaliser.from_dict(config["image_norm"])
        self._pixel_norm = ScoreNormaliser.from_dict(config["pixel_norm"])
        self._pixel_source = config.get("pixel_source", "oneclass")
        needs = {"supervised": self._head, "combined": self._combo, "patch": self._patch,
                 "finetuned": self._finetuned}
        if self.candidate in needs and needs[self.candidate] is None:
            raise EngineError(f"model artifact lacks the head its candidate {self.candidate!r} needs")
        if self.candidate == "combined" and self._head is None:
            raise EngineError("model artifact lacks the supervised head its combined candidate needs")
        if self._pixel_source not in ("oneclass", "patch") or (self._pixel_source == "patch" and self._patch is None):
            raise EngineError("model artifact has an inconsistent pixel_source")

    @classmethod
    def assemble(cls, config: dict[str, Any], trunk: dict[str, torch.Tensor], heads: dict[str, Any],
                 extractor: PatchFeatureExtractor | None = None,
                 device: str | torch.device | None = None) -> Model:
        """A model from its configuration, backbone trunk and parts (``heads``: name -> part, or a
        plain JSON-safe dict for parameter-only parts)."""
        tensors = {f"trunk.{k}": v for k, v in trunk.items()}
        stored: dict[str, Any] = {}
        # A part is either a plain JSON-safe dict of parameters or a Head (state.py).
        for name, part in heads.items():
            if isinstance(part, dict):
                stored[name] = part
            else:
                put(name, part, stored, tensors)
        return cls({**config, "heads": stored}, tensors, extractor=extractor, device=device)

    @property
    def report(self) -> dict[str, Any]:
        """The training report: the winning candidate, each candidate's cross-validated scores, the
        threshold and the rule that chose it, counts and timings (also saved with the model)."""
        return self.training_report

    # ------------------------------------------------------------------ features and raw scores
    def standardised_features(self, images: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """((B, D, gh, gw) descriptors standardised with the training normals' channel statistics,
        the base stage's raw features (the fine-tuned networks' input)), on the model's device."""
        feats, base = self._extractor.describe(images)
        return self._bank.standardise(feats), base

    def maps(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """CPU grid maps (B, gh, gw): 'raw' and smoothed 'oneclass' k-NN distances to the normal memory
        bank, plus (with a patch classifier) the smoothed 'patch' anomaly logit and best 'label' per cell."""
        raw = self._bank.distances(feats)
        out = {"raw": raw.cpu(), "oneclass": smooth(raw, self._sigma).cpu()}
        if self._patch is not None:
            b, _, gh, gw = feats.shape
            logit, label = self._patch.anomaly_logit(patch_inputs(feats.cpu(), out["raw"], out["oneclass"]))
            out["patch"] = smooth(torch.from_numpy(logit.astype(np.float32)).view(b, gh, gw), self._sigma)
            out["label"] = torch.from_numpy(label.astype(np.int64)).view(b, gh, gw)
        return out

    def raw_scores(self, maps: dict[str, torch.Tensor], pooled_feats: np.ndarray | None,
                   base: torch.Tensor) -> np.ndarray:
        """The selected candidate's raw image score from its ingredients."""
        oneclass = maps["oneclass"].flatten(1).amax(1).double().numpy()
        if self.candidate == "oneclass":
            return oneclass
        if self.candidate == "finetuned" and self._finetuned is not None:
            return self._finetuned.image_scores(base)
        if self.candidate == "patch" and self._patch is not None:
            return self._patch.image_score(maps["patch"].flatten(1).amax(1).double().numpy())
        if self._head is None or pooled_feats is None:  # __init__ checked each candidate's parts
            raise EngineError(f"model has no supervised head for candidate {self.candidate!r}")
        sup = self._head.logit(pooled_feats)
        if self.candidate == "supervised":
            return sup
        c = self._combo or {}
        return 0.5 * ((oneclass - c["oc_center"]) / c["oc_scale"] + (sup - c["sup_center"]) / c["sup_scale"])

    def _check_images(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        out = []
        w, h = self.image_size
        for i, im in enumerate(images):
            what = f"image {i}" if len(images) > 1 else "image"
            a = to_rgb_uint8(im, what)
            if a.shape[:2] != (h, w):
                raise EngineError(
                    f"{what} is {a.shape[1]}x{a.shape[0]} but the model was trained on {w}x{h} images; "
                    "resize it to the training size"
                )
            out.append(a)
        return out

    # ------------------------------------------------------------------ inference
    def warmup(self, max_batch: int = 1) -> None:
        """Run dummy predictions so the first real ones do not pay for tracing (~0.5 s) and for
        TorchScript's profiling runs and oneDNN's kernel set-up at a new batch size.

        Optional: call it when hosting a model, off the request path, with the largest batch
        ``predict_batch`` will be given (batch sizes in between get ready on first use)."""
        w, h = self.image_size
        grey = np.full((h, w, 3), 128, dtype=np.uint8)
        for size in sorted({1, max(1, max_batch)}):
            for _ in range(2):  # the first run of a shape profiles, the second runs the optimised graph
                self.predict_batch([grey] * size, batch_size=size)

    def predict(self, image: np.ndarray) -> Prediction:
        """Classify (and segment) one (H, W, 3) uint8 RGB image of the training size. Every model
        returns a per-pixel ``anomaly_map``; only segmentation models add ``mask``/``anomalies``."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[np.ndarray], batch_size: int = 2) -> list[Prediction]:
        """Predict several images; batched so activation memory stays bounded."""
        return [p for p, _ in self._predict_with_index(images, batch_size)]

    def _predict_with_index(self, images: Sequence[np.ndarray],
                            batch_size: int = 2) -> list[tuple[Prediction, np.ndarray | None]]:
        images = self._check_images(list(images))
        w, h = self.image_size
        results = []
        for s in range(0, len(images), batch_size):
            chunk = images[s : s + batch_size]
            feats, base = self.standardised_features(chunk)
            maps = self.maps(feats)
            pf = pooled(feats).cpu().double().numpy() if self._head is not None else None
            raw = self.raw_scores(maps, pf, base)
            scores = self._image_norm(raw)
            # Normalise on the grid, then upsample: identical decision surface, ~10x cheaper than
            # normalising every full-resolution pixel.
            grid01 = torch.from_numpy(self._pixel_norm(maps[self._pixel_source].numpy()).astype(np.float32))
            full = upsample(grid01, h, w).clamp_(0.0, 1.0).numpy()
            cells = maps["label"].numpy() if ("label" in maps and len(self._labels) > 1) else None
            for j in range(len(chunk)):
                score = float(scores[j])
                is_anom = bool(raw[j] >= self._image_norm.threshold)
                amap = full[j]
                mask, index = None, None
                anomalies: list[tuple[str, str, float]] = []
                if self.is_segmentation:
                    index = label_regions(amap, is_anom, None if cells is None else cells[j])
                    mask, anomalies = render(index, self._labels, self._colours)
                conf = score if is_anom else 1.0 - score
                results.append((Prediction(is_anom, float(conf), score, amap, mask, anomalies), index))
        return results

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, items: Sequence[Item]) -> Metrics:
        """Metrics on labelled items (unlabelled ones are ignored). Masks, when present on a
        segmentation model's items, give the per-label pixel metrics and IoU; on any model, masks
        (and normal items, all background) give the anomaly map's pixel AUROC."""
        names, labels, images, gts = [], [], [], []
        defects: list[np.ndarray | None] = []
        palette = [parse_hex(c, "label colour") for c in self._colours]
        w, h = self.image_size
        for i, it in enumerate(items):
            checked = labelled_image(it, i, "item")
            if checked is None:
                continue
            what, img = checked
            if img.shape[:2] != (h, w):
                raise EngineError(f"{what}: image is {img.shape[1]}x{img.shape[0]}, the model expects {w}x{h}")
            gt = None
            if self.is_segmentation:
                if it.mask is not None:
                    gt = decode_mask(it.mask, (h, w), palette, what)
                elif it.label == "normal":
                    gt = np.zeros((h, w), dtype=np.uint8)
            if it.mask is not None:
                defects.append(gt > 0 if gt is not None else defect_pixels(it.mask, (h, w), what))
            else:
                defects.append(np.zeros((h, w), dtype=bool) if it.label == "normal" else None)
            names.append(it.name)
            labels.append(str(it.label))
            images.append(img)
            gts.append(gt)
        if not images:
            raise EngineError("no labelled items to evaluate")
        out = self._predict_with_index(images)
        metrics = classification_metrics(names, labels, [p for p, _ in out])
        if self.is_segmentation:
            acc = SegmentationAccumulator(self._labels)
            for gt, (_, index) in zip(gts, out, strict=True):
                if gt is not None and index is not None:
                    acc.add(gt, index)
            metrics.per_label, metrics.mean_iou = acc.result()
        if any(d is not None and d.any() for d in defects):
            pixels = PixelAurocAccumulator()
            for defect, (prediction, _) in zip(defects, out, strict=True):
                if defect is not None:
                    pixels.add(prediction.anomaly_map, defect)
            metrics.pixel_auroc = pixels.result()
        return metrics

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> None:
        """Write a self-contained artifact (model.json + tensors.safetensors; no pickle)."""
        config = dict(self.config)
        config["training"] = self.training_report
        if self.test_metrics is not None:
            config["test_metrics"] = self.test_metrics.to_dict()
        artifact.write(directory, config, self.tensors)


def load_model(directory: str | Path, device: str | None = None) -> Model:
    """Load an artifact written by ``Model.save`` onto ``device`` (auto, cpu, cuda; default
    ``$LOOKOUT_DEVICE`` or auto); EngineError if it is missing or malformed."""
    config, tensors = artifact.read(directory)
    test_metrics = config.pop("test_metrics", None)
    try:
        model = Model(config, tensors, device=device)
    except EngineError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise EngineError(f"{directory}: malformed model artifact ({type(exc).__name__}: {exc})") from exc
    if isinstance(test_metrics, dict):
        try:
            model.test_metrics = Metrics(**test_metrics)
        except TypeError:
            model.test_metrics = None
    return model
