"""Padded 2-D filtering of image batches shared by the blur corruptions.

Every plane (image x channel) is treated as one group of a depthwise convolution over a
(1, N*C, H, W) tensor; on CPU this is several times faster than a batch of 1-channel planes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def filter_shared(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve every channel of every image with one kernel, keeping the size.

    Args:
        x: (N, C, H, W) images.
        kernel: (kh, kw) weights (not flipped; symmetric kernels make that moot).

    Returns:
        (N, C, H, W) filtered images; borders are reflected.
    """
    n, c, _, _ = x.shape
    return _depthwise(x, kernel.to(x)[None].expand(n * c, *kernel.shape))


def filter_separable(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Convolve with the outer product of a 1-D kernel with itself (rows, then columns).

    Args:
        x: (N, C, H, W) images.
        taps: (k,) 1-D weights, k odd.
    """
    n, c, _, _ = x.shape
    taps = taps.to(x)
    x = _depthwise(x, taps.view(1, 1, -1).expand(n * c, 1, -1))
    return _depthwise(x, taps.view(1, -1, 1).expand(n * c, -1, 1))


def filter_per_image(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Convolve each image with its own kernel, shared by its channels.

    Args:
        x: (N, C, H, W) images.
        kernels: (N, kh, kw) weights, one kernel per image.
    """
    return _depthwise(x, kernels.to(x).repeat_interleave(x.shape[1], dim=0))


def _depthwise(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x: (N, C, H, W); weight: (N*C, kh, kw), one kernel per plane."""
    n, c, h, w = x.shape
    _, kh, kw = weight.shape
    top, left = kh // 2, kw // 2
    pads = (left, kw - 1 - left, top, kh - 1 - top)
    mode = "reflect" if max(pads[:2]) < w and max(pads[2:]) < h else "replicate"
    planes = F.pad(x.reshape(1, n * c, h, w), pads, mode=mode)
    out = F.conv2d(planes, weight.unsqueeze(1).contiguous(), groups=n * c)
    return out.reshape(n, c, h, w)
