"""Training options. Defaults are chosen to be robust on unseen products, not tuned to one dataset."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from .errors import EngineError

# The backbones ``fit`` can use (all but the first need an ImageNet weights file the user names) and
# the devices it can compute on. They live in this torch-free module so that the server's command line
# can offer them without waiting for torch to load.
BACKBONES = ("efficientnet_lite0", "resnet18", "wide_resnet50_2")
DEFAULT_BACKBONE = BACKBONES[0]
DEVICES = ("cpu", "cuda", "auto")
# The image scorers training compares by cross-validation (training.py says what each is).
CANDIDATES = ("oneclass", "supervised", "combined", "patch", "finetuned")
MAX_FINETUNE_EPOCHS = 200
# Each repetition of the fine-tuning adds finetune_folds networks to train and to run per prediction
# (~10 ms each on 2 CPU cores at cookies size), while what averaging removes of one seed's noise shrinks
# like 1/repeats: past five, little is left to remove for the cost.
MAX_FINETUNE_REPEATS = 5


@dataclass
class FitOptions:
    """Knobs for ``fit``. Every loop in training is bounded by a step count derived from these, so the
    resulting model does not depend on machine load; ``max_train_seconds`` is only a safety cap
    (exceeding it raises EngineError rather than silently returning a different model)."""

    seed: int = 0
    backbone: str = DEFAULT_BACKBONE  # or another of BACKBONES (weights from a local file)
    backbone_weights: str | None = None  # path; default: installed Lite0 package / env LOOKOUT_BACKBONE_WEIGHTS
    max_train_seconds: float = 900.0
    # Where to compute: "auto" (CUDA when torch sees a device), "cpu", "cuda" or "cuda:N"; None reads
    # $LOOKOUT_DEVICE (default auto). A run-time choice: the model does not depend on it beyond
    # floating-point rounding, and loads on any device.
    device: str | None = None

    # Working resolution: images up to twice the pixel count of a 4:3 image whose longer side is
    # ``resolution`` px are used at native size (a 256x640 strip); larger ones are downscaled (aspect
    # kept) to that pixel count (384: 576x768 -> 288x384, the cost the latency budget is set at).
    # Small images are upscaled to at least ``min_resolution`` on the shorter side so the /8 feature
    # grid keeps enough cells.
    # Higher = smaller defects visible, slower predict and training.
    resolution: int = 384
    min_resolution: int = 160

    # Memory bank of normal patch features (PatchCore-style greedy coreset). Bounded regardless of
    # the number of images so memory and inference cost stay flat.
    # 1024 loses nothing measurable on the cookies (LOO AUROC 0.978 at 1024, 2048 and 4096) and halves
    # the k-NN share of predict time relative to 2048.
    memory_bank_size: int = 1024
    max_bank_candidates: int = 120_000  # random patch subsample the coreset is drawn from

    # Supervised component on pooled features: used only when the training set has at least this
    # many labelled anomalies and normals; picked or combined by cross-validation.
    min_anomalies_for_supervised: int = 8
    cv_folds: int = 5
    max_cv_images: int = 240  # cap on images scored in leave-out CV (bounds fit time on big sets)

    # Fine-tuning (finetune.py): epochs over the cross-validation images for each of the fold networks
    # of the "finetuned" candidate, trained when the supervised candidates are (enough anomalies). The
    # training budget: fit time grows about linearly with it; 0 turns fine-tuning off.
    finetune_epochs: int = 6
    finetune_folds: int = 3
    # Repetitions of the fine-tuning's cross-validation, each with its own folds and seeds; every
    # repetition adds finetune_folds networks to train and to run per prediction. More than one
    # averages away part of what one seed's batches decide (BENCHMARKS, engine v3 round 8).
    finetune_repeats: int = 1

    # Restrict the competition to these candidates (None: all that the data allows). "oneclass" always
    # runs (its memory bank gives the anomaly map) and is the fallback when none of these can run.
    candidates: list[str] | None = None

    # Anomaly-map smoothing (in feature-grid cells) before the image score is taken as its max.
    map_sigma: float = 1.0

    def validate(self) -> None:
        """Reject nonsensical values early, with the offending field named."""
        if self.resolution < 64 or self.resolution > 2048:
            raise EngineError("FitOptions.resolution must be in [64, 2048]")
        if self.min_resolution < 32 or self.min_resolution > self.resolution:
            raise EngineError("FitOptions.min_resolution must be in [32, resolution]")
        if self.memory_bank_size < 16:
            raise EngineError("FitOptions.memory_bank_size must be >= 16")
        if self.max_bank_candidates < self.memory_bank_size:
            raise EngineError("FitOptions.max_bank_candidates must be >= memory_bank_size")
        if self.cv_folds < 2:
            raise EngineError("FitOptions.cv_folds must be >= 2")
        if self.max_train_seconds <= 0:
            raise EngineError("FitOptions.max_train_seconds must be > 0")
        if self.device is not None and not isinstance(self.device, str):
            raise EngineError("FitOptions.device must be 'auto', 'cpu', 'cuda' or None")
        if not 0 <= self.finetune_epochs <= MAX_FINETUNE_EPOCHS:
            raise EngineError(f"FitOptions.finetune_epochs must be in [0, {MAX_FINETUNE_EPOCHS}]")
        if not 2 <= self.finetune_folds <= 10:
            raise EngineError("FitOptions.finetune_folds must be in [2, 10]")
        if not 1 <= self.finetune_repeats <= MAX_FINETUNE_REPEATS:
            raise EngineError(f"FitOptions.finetune_repeats must be in [1, {MAX_FINETUNE_REPEATS}]")
        if self.candidates is not None and (
                not isinstance(self.candidates, (list, tuple)) or not self.candidates
                or any(c not in CANDIDATES for c in self.candidates)):
            raise EngineError(f"FitOptions.candidates must be a non-empty list of {', '.join(CANDIDATES)}")
        if self.map_sigma < 0:
            raise EngineError("FitOptions.map_sigma must be >= 0")

    def to_dict(self) -> dict:
        """JSON-safe dict (stored in the model artifact for provenance)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FitOptions:
        """Inverse of to_dict; unknown keys are ignored so old artifacts keep loading."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
