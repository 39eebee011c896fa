"""A whole labelled dataset held in memory, before it is split among clients."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Pool:
    """Images and labels of one dataset (all of its original splits merged).

    Attributes:
        x: (N, C, H, W) float32 images scaled to [0, 1].
        y: (N,) int64 class labels in [0, num_classes).
        num_classes: number of classes C.
        name: source name, e.g. ``"digits"``.
        domain: optional (N,) int64 domain id of each image (multi-domain sources).
        domain_names: names of the domains, indexed by domain id.
    """

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    name: str
    domain: torch.Tensor | None = None
    domain_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.x.ndim != 4:
            raise ValueError(f"Pool.x must be (N, C, H, W), got shape {tuple(self.x.shape)}")
        if self.y.shape != (self.x.shape[0],):
            raise ValueError(f"Pool.y must be ({self.x.shape[0]},), got {tuple(self.y.shape)}")
        if self.domain is not None and self.domain.shape != self.y.shape:
            raise ValueError("Pool.domain must have one entry per image")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.x.shape[1:]
        return int(c), int(h), int(w)
