"""Patch scores -> smoothed grid maps -> image scores and full-resolution anomaly maps."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def smooth(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, gh, gw) grid maps (replicate padding).

    Smoothing before taking the max makes the image score a property of a small *region*, not of a
    single noisy patch -- the main guard against one odd-but-normal patch flagging an image.
    """
    if sigma <= 0:
        return maps
    k = _gaussian_kernel(sigma)
    r = (len(k) - 1) // 2
    x = maps.unsqueeze(1)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
    return x.squeeze(1)


def upsample(maps: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, gh, gw) -> (B, height, width) bilinear (the grid cell centres stay put)."""
    return F.interpolate(maps.unsqueeze(1), size=(height, width), mode="bilinear", align_corners=False).squeeze(1)
