"""Shared pieces of the Flower tests: comparable histories and tiny configs."""

from __future__ import annotations

import json
import math
from typing import Any

FLOWER_ONLY = ("seconds", "wire_bytes_down", "wire_bytes_up")
"""Record keys that differ between engines by nature (wall time) or exist only on Flower."""


def comparable(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records without wall time and wire bytes, NaN made comparable (JSON round trip)."""
    out = [{k: v for k, v in r.items() if k not in FLOWER_ONLY} for r in history]
    return json.loads(json.dumps(out).replace("NaN", "null"))


def comparable_summary(summary: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in summary.items() if k != "seconds_per_round"}
    return json.loads(json.dumps(out).replace("NaN", "null"))


def finite(x: float) -> bool:
    return not math.isnan(x) and not math.isinf(x)


TINY = ("data.num_clients=4", "data.max_samples=400", "partition.alpha=0.5", "model.cnn.width=8",
        "model.cnn.feature_dim=16", "train.rounds=2", "train.batch_size=16", "train.lr=0.1")
"""The tiny federation of the Flower tests: digits, 4 clients, 400 images, a small CNN, 2 rounds."""
