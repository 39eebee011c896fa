"""A classifier split into a feature extractor (body) and a classifier (head)."""

from __future__ import annotations

import torch
from torch import nn


class SplitModel(nn.Module):
    """``logits = head(body(x))``; algorithms choose which part is shared and which personal.

    Parameter names start with ``body.`` or ``head.``, so a name prefix tells the part.

    Attributes:
        body: maps (B, C, H, W) images to (B, feature_dim) features.
        head: maps (B, feature_dim) features to (B, num_classes) logits.
    """

    def __init__(self, body: nn.Module, head: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.body = body
        self.head = head
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.feature_bound = 0.0
        """When > 0, `features` scales each feature vector down to at most this L2 norm (set by
        methods that release feature statistics under privacy.*, so that what they train, fit
        and release lives in one ball). 0: features as the body computes them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, num_classes) logits."""
        return self.head(self.features(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, feature_dim), each row of norm at most ``feature_bound`` when that is set."""
        z = self.body(x)
        if self.feature_bound > 0:
            z = z * (self.feature_bound / z.norm(dim=1, keepdim=True).clamp_min(self.feature_bound))
        return z

    def part_names(self, part: str) -> list[str]:
        """Names (state_dict keys) of the ``"body"`` or ``"head"`` tensors, buffers included."""
        if part not in ("body", "head"):
            raise ValueError(f"part must be 'body' or 'head', got {part!r}")
        return [k for k in self.state_dict() if k.startswith(part + ".")]
