"""scikit-learn's bundled 8x8 handwritten digits (1,797 images): always available offline."""

from __future__ import annotations

from pathlib import Path

import torch

from pfedkit.data.pool import Pool
from pfedkit.data.registry import register_source


@register_source("digits")
def load_digits(root: Path) -> Pool:
    """Load the 8x8 digits as (1797, 1, 8, 8) float32 in [0, 1]; ``root`` is unused."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
    return Pool(x=x, y=y, num_classes=10, name="digits")
