"""Fog: a seeded plasma fractal (diamond-square) haze added to each image.

Severity constants (severity 1..5), (haze strength, roughness decay):
    (0.25, 2.8), (0.45, 2.5), (0.70, 2.2), (0.95, 2.0), (1.30, 1.8)
A larger decay damps fine detail faster, giving smoother fog. The haze map is periodic with the
next power of two above the image side as its period (32 for 32x32 images).
"""

from __future__ import annotations

import torch

FOG_PARAMS = ((0.25, 2.8), (0.45, 2.5), (0.70, 2.2), (0.95, 2.0), (1.30, 1.8))


def plasma_fractal(
    num: int, size: int, decay: float, generator: torch.Generator, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """(num, size, size) float32 diamond-square fractals, each rescaled to [0, 1].

    ``size`` must be a power of two; the map wraps around (periodic). At each halving of the
    step the random perturbation amplitude is divided by ``decay``. All maps of the batch are
    built together: the loop runs over log2(size) scales only.
    """
    if size < 2 or size & (size - 1):
        raise ValueError(f"plasma size must be a power of two >= 2, got {size}")
    m = torch.zeros(num, size, size, device=device)
    step, amp = size, 1.0

    while step >= 2:
        half = step // 2
        corners = m[:, 0::step, 0::step]  # C[i, j] = m[i*step, j*step]
        centre = (corners + corners.roll(-1, 1) + corners.roll(-1, 2) + corners.roll((-1, -1), (1, 2))) / 4
        centre = centre + _wobble(centre.shape, amp, generator, device)  # D[i, j] = m[i*step+half, j*step+half]
        m[:, half::step, half::step] = centre
        top = (corners + corners.roll(-1, 2) + centre + centre.roll(1, 1)) / 4  # m[i*step, j*step+half]
        left = (corners + corners.roll(-1, 1) + centre + centre.roll(1, 2)) / 4  # m[i*step+half, j*step]
        m[:, 0::step, half::step] = top + _wobble(top.shape, amp, generator, device)
        m[:, half::step, 0::step] = left + _wobble(left.shape, amp, generator, device)
        step, amp = half, amp / decay
    low = m.amin(dim=(1, 2), keepdim=True)
    high = m.amax(dim=(1, 2), keepdim=True)
    return (m - low) / (high - low).clamp(min=1e-12)


def fog(x: torch.Tensor, params: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """(x + s F) * x_max / (x_max + s) with F a per-image plasma haze and x_max the image maximum.

    x: (N, C, H, W) in [0, 1]; every channel gets the same (grey) haze.
    """
    strength, decay = params
    n, _, h, w = x.shape
    size = 1 << (max(h, w) - 1).bit_length()  # the next power of two
    haze = plasma_fractal(n, size, decay, generator, x.device)[:, None, :h, :w].to(x.dtype)
    top = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + strength * haze) * top / (top + strength)


def _wobble(
    shape: torch.Size, amp: float, generator: torch.Generator, device: torch.device | str
) -> torch.Tensor:
    """Uniform noise in [-amp, amp]."""
    return (torch.rand(shape, generator=generator, device=device) * 2 - 1) * amp
