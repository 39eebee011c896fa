"""Small CNN for 8x8, 28x28 and 32x32 images (FedAvg-paper style, two conv blocks)."""

from __future__ import annotations

from torch import nn

from pfedkit.models.registry import register_model
from pfedkit.models.split import SplitModel


@register_model("cnn")
def small_cnn(
    input_shape: tuple[int, int, int], num_classes: int, width: int = 32, feature_dim: int = 128,
    norm: str = "none",
) -> SplitModel:
    """Two 3x3 conv blocks (width, 2*width channels, each followed by 2x2 max-pool) + an FC layer.

    Args:
        input_shape: (C, H, W) of one image; H and W must be at least 4.
        num_classes: number of output classes.
        width: channels of the first conv block.
        feature_dim: size of the feature vector the body outputs.
        norm: ``"none"`` or ``"batch"`` (BatchNorm after each conv, for FedBN).
    Returns:
        SplitModel whose body gives (B, feature_dim) features and head a linear classifier.
    """
    c, h, w = input_shape
    if min(h, w) < 4:
        raise ValueError(f"cnn needs images of at least 4x4, got {h}x{w}")

    def block(c_in: int, c_out: int) -> list[nn.Module]:
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1)]
        if norm == "batch":
            layers.append(nn.BatchNorm2d(c_out))
        elif norm != "none":
            raise ValueError(f"norm must be 'none' or 'batch', got {norm!r}")
        return layers + [nn.ReLU(), nn.MaxPool2d(2)]

    flat = 2 * width * (h // 4) * (w // 4)
    body = nn.Sequential(
        *block(c, width), *block(width, 2 * width), nn.Flatten(), nn.Linear(flat, feature_dim), nn.ReLU()
    )
    head = nn.Linear(feature_dim, num_classes)
    return SplitModel(body, head, feature_dim, num_classes)
