"""The two-conv CNN of McMahan et al. (AISTATS 2017), the default CNN of PFLlib and most pFL papers.

Layers (``body`` then ``head``), for a (B, C, H, W) input::

    conv1  Conv2d(C, width, 5, padding=p) -> ReLU -> MaxPool2d(2)     (B, width, H1, W1)
    conv2  Conv2d(width, 2*width, 5, padding=p) -> ReLU -> MaxPool2d(2) (B, 2*width, H2, W2)
    flatten -> fc1 Linear(2*width*H2*W2, feature_dim) -> ReLU          (B, feature_dim)
    head   Linear(feature_dim, num_classes)                           (B, num_classes)

with ``H1 = (H + 2p - 4) // 2`` and ``H2 = (H1 + 2p - 4) // 2`` (same for W).

``padding=0`` is PFLlib's ``FedAvgCNN`` (flat size 1024 on 28x28 and 1600 on 32x32);
``padding=2`` ("same" convolutions) is the network of McMahan et al., whose Fashion-/MNIST
version has the 1,663,370 parameters quoted in the paper. Inputs whose feature map would
shrink below 1x1 (e.g. 8x8 digits with ``padding=0``) are rejected with
:class:`InputTooSmallError` (a ``ValueError``); ``padding=2`` accepts any input of at least 4x4.

Parameter names: ``body.conv1.*``, ``body.conv2.*``, ``body.fc1.*``, ``head.*``.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass

from torch import nn

from pfedkit.core.config import check_range, param
from pfedkit.core.errors import ConfigError
from pfedkit.models.registry import register_model
from pfedkit.models.split import SplitModel

KERNEL = 5


class InputTooSmallError(ConfigError, ValueError):
    """The input images are too small for the network: a ``ValueError`` for callers of the
    factory, and a :class:`ConfigError` so the CLI prints it as a one-line message."""


@dataclass
class FedAvgCNNOptions:
    """Options of :func:`fedavg_cnn` (defaults = McMahan et al. / PFLlib)."""

    width: int = param(32, lo=1, hi=4096, doc="channels of the first conv; the second has 2*width")
    feature_dim: int = param(512, lo=2, hi=8192, doc="size of the fc1 feature vector the body outputs")
    padding: int = param(0, choices=(0, 2), doc="conv padding: 0 = PFLlib FedAvgCNN, 2 = McMahan et al. "
                                                "('same' convolutions)")


def conv_output_size(size: int, padding: int) -> int:
    """Side length after one conv(5x5, ``padding``) + max-pool(2x2) block; < 1 means it collapsed."""
    after_conv = size + 2 * padding - KERNEL + 1
    return after_conv // 2 if after_conv >= 1 else 0


@register_model("fedavg_cnn", FedAvgCNNOptions)
def fedavg_cnn(input_shape: tuple[int, int, int], num_classes: int, options: FedAvgCNNOptions) -> SplitModel:
    """Build the McMahan et al. CNN as a body/head :class:`SplitModel`.

    Args:
        input_shape: (C, H, W) of one image, e.g. (1, 28, 28) or (3, 32, 32).
        num_classes: number of output classes.
        options: widths, feature size and conv padding (see :class:`FedAvgCNNOptions`).
    Returns:
        SplitModel whose body maps (B, C, H, W) to (B, feature_dim) (ReLU output of fc1) and
        whose head is ``Linear(feature_dim, num_classes)``.
    Raises:
        InputTooSmallError: (a ValueError) if H or W shrinks below 1 after a conv/pool block.
        ConfigError: if an option is outside its declared range or choices.
    """
    _check_options(options)
    c, h, w = input_shape
    p = options.padding
    h1, w1 = conv_output_size(h, p), conv_output_size(w, p)
    h2, w2 = conv_output_size(h1, p), conv_output_size(w1, p)
    if min(h1, w1, h2, w2) < 1:
        hint = " (padding=2 accepts inputs down to 4x4)" if p == 0 else ""
        raise InputTooSmallError(
            f"fedavg_cnn: input {h}x{w} is too small for two 5x5 conv + 2x2 pool blocks with "
            f"padding={p}: the feature map shrinks to {h1}x{w1} then {h2}x{w2}; it needs at least "
            f"{_min_side(p)}x{_min_side(p)}{hint}"
        )
    width = options.width
    flat = 2 * width * h2 * w2
    body = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(c, width, KERNEL, padding=p)),
        ("relu1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(width, 2 * width, KERNEL, padding=p)),
        ("relu2", nn.ReLU()),
        ("pool2", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(flat, options.feature_dim)),
        ("relu3", nn.ReLU()),
    ]))
    head = nn.Linear(options.feature_dim, num_classes)
    return SplitModel(body, head, options.feature_dim, num_classes)


def _min_side(padding: int) -> int:
    """Smallest side length that survives both blocks."""
    size = 1
    while conv_output_size(conv_output_size(size, padding), padding) < 1:
        size += 1
    return size


def _check_options(options: FedAvgCNNOptions) -> None:
    for f in dataclasses.fields(options):
        check_range(f"model.{f.name}", getattr(options, f.name), f.metadata)
