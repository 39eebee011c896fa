"""Blur corruptions: defocus (disk), Gaussian, motion (random direction), zoom.

Severity constants (pixels, for 32x32 images, severity 1..5):
    defocus_blur:  disk radius 0.6, 0.9, 1.2, 1.6, 2.0
    gaussian_blur: sigma 0.5, 0.75, 1.0, 1.3, 1.7
    motion_blur:   streak length 2, 3, 4, 5.5, 7.5 at a uniform random angle in [-45, 45] degrees
    zoom_blur:     largest zoom 1.06, 1.11, 1.16, 1.22, 1.30 (7 zoom steps averaged)
"""

from __future__ import annotations

import math

import torch

from pfedkit.data.corruptions._filters import filter_per_image, filter_separable, filter_shared

DEFOCUS_RADIUS = (0.6, 0.9, 1.2, 1.6, 2.0)
GAUSSIAN_SIGMA = (0.5, 0.75, 1.0, 1.3, 1.7)
MOTION_LENGTH = (2.0, 3.0, 4.0, 5.5, 7.5)
ZOOM_MAX = (1.06, 1.11, 1.16, 1.22, 1.30)
_ZOOM_STEPS = 7


def disk_kernel(radius: float) -> torch.Tensor:
    """(k, k) anti-aliased disk of the given radius in pixels, summing to 1, k = 2 ceil(r) + 1."""
    half = math.ceil(radius)
    grid = torch.arange(-half, half + 1, dtype=torch.float64)
    dist = torch.sqrt(grid[:, None] ** 2 + grid[None, :] ** 2)
    weights = (radius + 0.5 - dist).clamp(0.0, 1.0)
    return (weights / weights.sum()).float()


def gaussian_taps(sigma: float) -> torch.Tensor:
    """(2 ceil(3 sigma) + 1,) normalised 1-D Gaussian."""
    half = max(1, math.ceil(3 * sigma))
    grid = torch.arange(-half, half + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (grid / sigma) ** 2)
    return (taps / taps.sum()).float()


def defocus_blur(x: torch.Tensor, radius: float, generator: torch.Generator) -> torch.Tensor:
    """Out-of-focus lens: convolve with a disk. x: (N, C, H, W). Deterministic."""
    return filter_shared(x, disk_kernel(radius))


def gaussian_blur(x: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """Separable Gaussian blur with standard deviation ``sigma`` pixels. Deterministic."""
    return filter_separable(x, gaussian_taps(sigma))


def motion_kernels(length: float, angles: torch.Tensor) -> torch.Tensor:
    """(N, k, k) line kernels: a centred streak of ``length`` pixels at each angle (radians).

    The streak is sampled densely and each sample is splatted bilinearly, so the kernel is
    smooth in the angle; k = 2 ceil(length / 2) + 1.
    """
    n = angles.shape[0]
    half = math.ceil(length / 2)
    k = 2 * half + 1
    t = torch.linspace(-length / 2, length / 2, max(2, int(4 * length) + 1), dtype=torch.float64)
    px = half + t[None, :] * torch.cos(angles.double())[:, None]  # (N, P) column coordinate
    py = half - t[None, :] * torch.sin(angles.double())[:, None]  # (N, P) row coordinate
    x0, y0 = px.floor(), py.floor()
    kernels = torch.zeros(n, k * k, dtype=torch.float64)
    for dx in (0, 1):
        for dy in (0, 1):
            cx, cy = x0 + dx, y0 + dy
            w = (1 - (px - cx).abs()) * (1 - (py - cy).abs())
            inside = (cx >= 0) & (cx < k) & (cy >= 0) & (cy < k)
            flat = (cy.clamp(0, k - 1) * k + cx.clamp(0, k - 1)).long()
            kernels.scatter_add_(1, flat, torch.where(inside, w, torch.zeros_like(w)))
    kernels /= kernels.sum(dim=1, keepdim=True)
    return kernels.view(n, k, k).float()


def motion_blur(x: torch.Tensor, length: float, generator: torch.Generator) -> torch.Tensor:
    """Camera shake: each image is smeared along its own random direction in [-45, 45] degrees."""
    u = torch.rand(x.shape[0], generator=generator, device=x.device, dtype=torch.float64)
    angles = (u - 0.5) * (math.pi / 2)
    return filter_per_image(x, motion_kernels(length, angles.cpu()).to(x.device))


def zoom_matrix(size: int, zoom: float) -> torch.Tensor:
    """(size, size) linear map of one image axis: bilinear centre zoom by ``zoom`` >= 1.

    Output pixel i samples the input at the pixel-centre coordinate (i + 0.5 - size / 2) / zoom
    + size / 2 - 0.5, clamped to the border, with linear interpolation between neighbours.
    """
    out = torch.arange(size, dtype=torch.float64)
    src = ((out + 0.5 - size / 2) / zoom + size / 2 - 0.5).clamp(0, size - 1)
    low = src.floor().long().clamp(max=size - 1)
    high = (low + 1).clamp(max=size - 1)
    frac = src - low
    matrix = torch.zeros(size, size, dtype=torch.float64)
    matrix.index_put_((out.long(), low), 1 - frac, accumulate=True)
    matrix.index_put_((out.long(), high), frac, accumulate=True)
    return matrix.float()


def zoom_blur(x: torch.Tensor, max_zoom: float, generator: torch.Generator) -> torch.Tensor:
    """Zooming during exposure: mean of the image and centre zooms from 1 up to ``max_zoom``.

    A centre zoom is separable (rows and columns are resampled independently), so each zoom is
    two small matrix products over the whole batch. Deterministic.
    """
    n, c, h, w = x.shape
    planes = x.reshape(n * c, h, w)
    total = planes.clone()
    for zoom in torch.linspace(1.0, max_zoom, _ZOOM_STEPS)[1:].tolist():
        rows, cols = zoom_matrix(h, zoom).to(x), zoom_matrix(w, zoom).to(x)
        along_w = (planes.reshape(-1, w) @ cols.T).reshape(n * c, h, w)
        along_h = along_w.transpose(1, 2).reshape(-1, h) @ rows.T  # (N*C*W, H)
        total += along_h.reshape(n * c, w, h).transpose(1, 2)
    return (total / _ZOOM_STEPS).reshape(n, c, h, w)
