"""Pixelation: box-downsample then nearest-neighbour upsample back to the original size.

Severity constants (severity 1..5): kept fraction of each side 0.85, 0.70, 0.55, 0.45, 0.35
(a 32x32 image goes through 27, 22, 18, 14, 11 pixels a side).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PIXELATE_FRACTION = (0.85, 0.70, 0.55, 0.45, 0.35)


def pixelate(x: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Average over blocks to round(fraction x side) pixels, then blow up with nearest. Deterministic."""
    h, w = x.shape[-2:]
    small = (max(1, round(h * fraction)), max(1, round(w * fraction)))
    return F.interpolate(F.adaptive_avg_pool2d(x, small), size=(h, w), mode="nearest")
