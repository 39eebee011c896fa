"""Sensor-noise corruptions: additive Gaussian, Poisson shot, salt-and-pepper, multiplicative speckle.

Severity constants (for 32x32 images in [0, 1], severity 1..5):
    gaussian_noise: noise std 0.04, 0.06, 0.08, 0.10, 0.13
    shot_noise:     photons per unit intensity 400, 200, 100, 60, 35 (std = sqrt(x / photons))
    impulse_noise:  fraction of values set to 0 or 1: 0.01, 0.025, 0.045, 0.07, 0.10
    speckle_noise:  relative std 0.07, 0.11, 0.15, 0.20, 0.26
"""

from __future__ import annotations

import torch

GAUSSIAN_STD = (0.04, 0.06, 0.08, 0.10, 0.13)
SHOT_PHOTONS = (400.0, 200.0, 100.0, 60.0, 35.0)
IMPULSE_FRACTION = (0.01, 0.025, 0.045, 0.07, 0.10)
SPECKLE_STD = (0.07, 0.11, 0.15, 0.20, 0.26)


def gaussian_noise(x: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """x + N(0, std^2), independently per value. x: (N, C, H, W) in [0, 1]."""
    return x + std * _normal(x, generator)


def shot_noise(x: torch.Tensor, photons: float, generator: torch.Generator) -> torch.Tensor:
    """Poisson(x * photons) / photons: photon-counting noise whose variance grows with intensity."""
    return torch.poisson(x.clamp(min=0) * photons, generator=generator) / photons


def impulse_noise(x: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Salt and pepper: each value becomes 0 or 1 (equally likely) with probability ``fraction``."""
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    out = torch.where(u < fraction / 2, torch.zeros_like(x), x)
    return torch.where(u > 1 - fraction / 2, torch.ones_like(x), out)


def speckle_noise(x: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """x + x * N(0, std^2): multiplicative noise, strongest on bright regions."""
    return x + x * std * _normal(x, generator)


def _normal(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
