"""Patch descriptors: frozen backbone levels -> locally aggregated, concatenated features on a /8 grid.

As in PatchCore, each level is average-pooled over a 3x3 neighbourhood (a patch "sees" a little
context, which makes descriptors robust to small misalignment), the coarser level is upsampled to the
finest grid, and levels are concatenated. A /8 grid at the default working resolution (longer side
384 px) gives one descriptor per 8x8 working pixels -- fine enough for small cracks and pinholes.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .backbone import NORMALISATION, Trunk
from .images import to_tensor_batch


def pooled(descriptors: torch.Tensor) -> torch.Tensor:
    """(B, D, gh, gw) descriptors -> (B, 2D) [mean, max] over the grid: one vector an image.

    The mean says what a surface is made of; the max keeps where its distinctive details are (a
    defect for the supervised head, a part's own marks for the near-duplicate search, groups.py).
    Both commute with a per-channel standardisation (positive scale), so pooling raw descriptors and
    standardising after gives the same vector as pooling standardised ones."""
    flat = descriptors.flatten(2)
    return torch.cat([flat.mean(2), flat.amax(2)], 1)


class PatchFeatureExtractor:
    """Turns uint8 RGB images (already validated, all of one size) into (B, D, gh, gw) descriptors."""

    STRIDE = 8

    def __init__(self, backbone: str, trunk_sd: dict[str, torch.Tensor], work_size: tuple[int, int],
                 device: torch.device | None = None) -> None:
        self.backbone = backbone
        self.device = device or torch.device("cpu")
        self.trunk = Trunk(backbone, trunk_sd).to(self.device)
        self.work_w, self.work_h = work_size
        mean, std = NORMALISATION[backbone]
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)

    @property
    def grid(self) -> tuple[int, int]:
        """(gh, gw) of the descriptor grid."""
        return self.work_h // self.STRIDE, self.work_w // self.STRIDE

    def __call__(self, images: Sequence[np.ndarray], batch_size: int = 2) -> torch.Tensor:
        """Descriptors for ``images`` on the extractor's device; small batches (CPU caches favour
        them; bounded memory)."""
        return self.describe(images, batch_size)[0]

    @torch.inference_mode()
    def describe(self, images: Sequence[np.ndarray], batch_size: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
        """(descriptors (B, D, gh, gw), the base stage's raw features (B, C0, h0, w0)): the second is
        the input of the fine-tuned upper stages (finetune.py, ``Trunk.base_stage``)."""
        out, bases = [], []
        for x in self._batches(images, batch_size):
            base, *levels = self.trunk(x)
            out.append(self._describe(levels))
            bases.append(base.float())
        return torch.cat(out, 0), torch.cat(bases, 0)

    @torch.inference_mode()
    def base(self, images: Sequence[np.ndarray], batch_size: int = 2) -> torch.Tensor:
        """The base stage's raw features (B, C0, h0, w0) alone: ``describe``'s second output without
        the patch levels and the descriptors (``Trunk.base``)."""
        return torch.cat([self.trunk.base(x).float() for x in self._batches(images, batch_size)], 0)

    def _batches(self, images: Sequence[np.ndarray], batch_size: int) -> Iterator[torch.Tensor]:
        """``images`` as normalised, channels-last input batches on the extractor's device."""
        for i in range(0, len(images), batch_size):
            x = to_tensor_batch(list(images[i : i + batch_size]), self.work_w, self.work_h).to(self.device)
            yield ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)

    def _describe(self, maps: list[torch.Tensor]) -> torch.Tensor:
        gh, gw = self.grid
        feats = []
        for m in maps:
            m = F.avg_pool2d(m.float(), 3, stride=1, padding=1, count_include_pad=False)
            if m.shape[-2:] != (gh, gw):
                m = F.interpolate(m, size=(gh, gw), mode="bilinear", align_corners=False)
            feats.append(m)
        return torch.cat(feats, 1).contiguous()
