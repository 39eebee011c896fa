"""CIFAR-style ResNet-18 (He et al. 2016, as adapted for 32x32 images in most FL papers).

Differences from the ImageNet ResNet-18: the stem is one 3x3 conv with stride 1 and there is no
max-pool, so a 32x32 image keeps its resolution in the first stage. Layers, for a (B, C, H, W)
input and base width ``w`` (64 = the standard network)::

    stem    conv3x3(C, w, stride 1) -> norm -> ReLU                (B, w,  H,    W)
    layer1  2 BasicBlocks, w channels, stride 1                    (B, w,  H,    W)
    layer2  2 BasicBlocks, 2w channels, first stride 2             (B, 2w, H/2,  W/2)
    layer3  2 BasicBlocks, 4w channels, first stride 2             (B, 4w, H/4,  W/4)
    layer4  2 BasicBlocks, 8w channels, first stride 2             (B, 8w, H/8,  W/8)
    pool    global average pool + flatten                          (B, 8w) = feature_dim
    head    Linear(8w, num_classes)                                (B, num_classes)

(spatial sizes round up: a stride-2 3x3 conv with padding 1 maps n to ceil(n/2)). Any input of
at least 1x1 works, with any number of channels C. Convolutions have no bias (a norm follows
each); a block whose shape changes gets a 1x1-conv + norm shortcut. With w=64 and 10 classes the
model has 11,173,962 parameters.

Normalisation (``norm``):
    * ``"batch"``: BatchNorm2d (with running-statistics buffers).
    * ``"group"``: GroupNorm with 2 groups in every layer, as in Hsieh et al. (ICML 2020, "The
      non-IID data quagmire"), which replaces BatchNorm because its batch statistics break under
      non-IID clients. No buffers, so nothing but parameters is averaged. Requires an even width.

Parameter names: ``body.conv1.*``, ``body.norm1.*``, ``body.layer{1..4}.{0,1}.{conv1,norm1,conv2,
norm2}.*``, ``body.layer{2..4}.0.shortcut.{0,1}.*``, ``head.*``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from pfedkit.core.config import check_range, param
from pfedkit.core.errors import ConfigError
from pfedkit.models.registry import register_model
from pfedkit.models.split import SplitModel

GROUPS = 2  # GroupNorm groups (Hsieh et al. 2020)


@dataclass
class ResNet18Options:
    """Options of :func:`resnet18`."""

    width: int = param(64, lo=1, hi=1024, doc="base channels; stages have w, 2w, 4w, 8w and feature_dim = 8w")
    norm: str = param("batch", choices=("batch", "group"), doc="BatchNorm or GroupNorm(2 groups)")


def make_norm(kind: str, channels: int) -> nn.Module:
    """A normalisation layer over (B, channels, H, W): BatchNorm2d or GroupNorm(2, channels)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(GROUPS, channels)
    raise ConfigError(f"model.cnn.norm={kind!r} is not allowed; choose one of batch, group")


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection: (B, c_in, H, W) -> (B, c_out, ceil(H/s), ceil(W/s))."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.norm1 = make_norm(norm, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.norm2 = make_norm(norm, c_out)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                          make_norm(norm, c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, c_in, H, W) -> (B, c_out, H', W')."""
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNetBody(nn.Module):
    """Stem + four stages + global average pool: (B, C, H, W) -> (B, 8*width) features."""

    def __init__(self, in_channels: int, width: int, norm: str, blocks: tuple[int, ...] = (2, 2, 2, 2)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        self.norm1 = make_norm(norm, width)
        self.relu = nn.ReLU()
        c_in = width
        for i, n_blocks in enumerate(blocks):
            c_out = width * 2**i
            stride = 1 if i == 0 else 2
            layer = nn.Sequential(*(BasicBlock(c_in if j == 0 else c_out, c_out, stride if j == 0 else 1, norm)
                                    for j in range(n_blocks)))
            self.add_module(f"layer{i + 1}", layer)
            c_in = c_out
        self.out_dim = c_in
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, out_dim)."""
        x = self.relu(self.norm1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.pool(x), 1)


@register_model("resnet18", ResNet18Options)
def resnet18(input_shape: tuple[int, int, int], num_classes: int, options: ResNet18Options) -> SplitModel:
    """Build a CIFAR-style ResNet-18 as a body/head :class:`SplitModel`.

    Args:
        input_shape: (C, H, W) of one image, e.g. (3, 32, 32) or (1, 28, 28); H, W >= 1.
        num_classes: number of output classes.
        options: base width and normalisation (see :class:`ResNet18Options`).
    Returns:
        SplitModel whose body maps (B, C, H, W) to (B, 8*width) pooled features and whose head is
        ``Linear(8*width, num_classes)``.
    Raises:
        ConfigError: an option outside its range/choices, or an odd width with ``norm="group"``.
        ValueError: an input with H or W below 1.
    """
    for f in dataclasses.fields(options):
        check_range(f"model.{f.name}", getattr(options, f.name), f.metadata)
    if options.norm == "group" and options.width % GROUPS:
        raise ConfigError(f"model.cnn.width={options.width} must be even with model.cnn.norm=group "
                          f"(GroupNorm uses {GROUPS} groups)")
    c, h, w = input_shape
    if min(c, h, w) < 1:
        raise ValueError(f"resnet18 needs an input of shape (C, H, W) with all sizes >= 1, got {input_shape}")
    body = ResNetBody(c, options.width, options.norm)
    head = nn.Linear(body.out_dim, num_classes)
    return SplitModel(body, head, body.out_dim, num_classes)
