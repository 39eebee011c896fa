"""CIFAR-C-style environmental corruptions, our own deterministic and batch-vectorised versions.

``corrupt(x, name, severity, generator)`` distorts a batch (N, C, H, W) of float32 images in
[0, 1] (C = 1 or 3) and returns a new batch of the same shape clipped to [0, 1]. Severity 0 is
the clean image; severities 1..5 use constants chosen for 32x32 images (listed in each
module's docstring). Random corruptions draw only from ``generator``, so a fixed seed gives a
fixed result; the others ignore it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import torch

from pfedkit.core.errors import ConfigError
from pfedkit.data.corruptions import blur, digital, fog, jpeg, noise, photometric

CorruptionFn = Callable[[torch.Tensor, Any, torch.Generator], torch.Tensor]

_TABLE: MappingProxyType[str, tuple[CorruptionFn, tuple[Any, ...]]] = MappingProxyType(
    {
        "gaussian_noise": (noise.gaussian_noise, noise.GAUSSIAN_STD),
        "shot_noise": (noise.shot_noise, noise.SHOT_PHOTONS),
        "impulse_noise": (noise.impulse_noise, noise.IMPULSE_FRACTION),
        "speckle_noise": (noise.speckle_noise, noise.SPECKLE_STD),
        "defocus_blur": (blur.defocus_blur, blur.DEFOCUS_RADIUS),
        "gaussian_blur": (blur.gaussian_blur, blur.GAUSSIAN_SIGMA),
        "motion_blur": (blur.motion_blur, blur.MOTION_LENGTH),
        "zoom_blur": (blur.zoom_blur, blur.ZOOM_MAX),
        "contrast": (photometric.contrast, photometric.CONTRAST_FACTOR),
        "brightness": (photometric.brightness, photometric.BRIGHTNESS_SHIFT),
        "pixelate": (digital.pixelate, digital.PIXELATE_FRACTION),
        "jpeg": (jpeg.jpeg, jpeg.JPEG_QUALITY),
        "fog": (fog.fog, fog.FOG_PARAMS),
    }
)

CORRUPTIONS: tuple[str, ...] = tuple(_TABLE)
"""Names of all corruption types, in a fixed order."""

SEVERITIES: tuple[int, ...] = (0, 1, 2, 3, 4, 5)
"""Valid severities; 0 means clean."""


def corruption_level(name: str, severity: int) -> Any:
    """The constant behind ``name`` at ``severity`` 1..5 (e.g. the noise std), for reports."""
    fn_levels = _lookup(name)
    _check_severity(severity, allow_clean=False)
    return fn_levels[1][operator.index(severity) - 1]


def corrupt(x: torch.Tensor, name: str, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Apply one corruption at one severity to a batch of images.

    Args:
        x: (N, C, H, W) float images in [0, 1], C = 1 or 3.
        name: one of :data:`CORRUPTIONS`.
        severity: 0 (clean copy) to 5.
        generator: torch.Generator on x's device; the only source of randomness.

    Returns:
        (N, C, H, W) tensor of x's dtype, clipped to [0, 1]; ``x`` is not modified.

    Raises:
        ConfigError: unknown name or severity (the message lists the allowed values).
        ValueError: x is not a float batch of 1- or 3-channel images.
    """
    fn, levels = _lookup(name)
    _check_severity(severity, allow_clean=True)
    if x.ndim != 4 or x.shape[1] not in (1, 3) or not x.is_floating_point():
        raise ValueError(f"corrupt expects float (N, C, H, W) images with C in (1, 3), got {tuple(x.shape)} {x.dtype}")
    if severity == 0 or x.shape[0] == 0:
        return x.clamp(0.0, 1.0)
    return fn(x, levels[operator.index(severity) - 1], generator).clamp_(0.0, 1.0)


def _lookup(name: str) -> tuple[CorruptionFn, tuple[Any, ...]]:
    if name not in _TABLE:
        raise ConfigError(f"unknown corruption {name!r}; choose one of {', '.join(CORRUPTIONS)}")
    return _TABLE[name]


def _check_severity(severity: int, allow_clean: bool) -> None:
    allowed = SEVERITIES if allow_clean else SEVERITIES[1:]
    try:
        valid = not isinstance(severity, bool) and operator.index(severity) in allowed
    except TypeError:
        valid = False
    if not valid:
        raise ConfigError(
            f"unknown corruption severity {severity!r}; choose one of {', '.join(map(str, allowed))}"
        )


__all__ = ["CORRUPTIONS", "SEVERITIES", "corrupt", "corruption_level"]
