"""Photometric corruptions: contrast loss and over-exposure (brightness).

Severity constants (severity 1..5):
    contrast:   factor towards the image mean 0.70, 0.50, 0.38, 0.27, 0.17 (1 = unchanged)
    brightness: added HSV value 0.08, 0.16, 0.24, 0.32, 0.42
"""

from __future__ import annotations

import torch

CONTRAST_FACTOR = (0.70, 0.50, 0.38, 0.27, 0.17)
BRIGHTNESS_SHIFT = (0.08, 0.16, 0.24, 0.32, 0.42)


def contrast(x: torch.Tensor, factor: float, generator: torch.Generator) -> torch.Tensor:
    """(x - m) * factor + m with m each image's mean over channels and pixels. Deterministic."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * factor + mean


def brightness(x: torch.Tensor, shift: float, generator: torch.Generator) -> torch.Tensor:
    """Add ``shift`` to the HSV value channel, keeping hue and saturation. Deterministic.

    With hue and saturation fixed every RGB channel is proportional to the value V = max over
    channels, so the new pixel is x * min(V + shift, 1) / V (grey V + shift where V = 0).
    For one-channel images this is x + shift.
    """
    value = x.amax(dim=1, keepdim=True)
    target = (value + shift).clamp(max=1.0)
    ratio = target / value.clamp(min=1e-12)
    return torch.where(value > 0, x * ratio, target.expand_as(x))
