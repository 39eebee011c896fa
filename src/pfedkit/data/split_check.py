"""Every client needs a train, a validation and a test split: refuse a federation that leaves
one empty, naming the clients and the keys that fix it.

The evaluation protocol reports accuracy over *all* clients and selects the reported round by
their mean validation accuracy; a client without a test (or validation) split would silently
drop out of those means, so such a federation is refused before any training.
"""

from __future__ import annotations

from typing import Sequence

import torch

from pfedkit.core.config import DataConfig, PartitionConfig
from pfedkit.core.errors import PartitionError
from pfedkit.data.client_data import ClientData

SPLITS = ("train", "val", "test")
_NO_MIN_SIZE = ("iid", "pathological", "shards")
"""Schemes that do not read ``partition.min_size``."""


def check_client_splits(clients: Sequence[ClientData], data: DataConfig, part: PartitionConfig) -> None:
    """PartitionError when any client's train, val or test split is empty.

    The message names how many clients (of ``len(clients)``) are affected, the first of them
    with its size, and the keys that fix it. ``data.val_fraction=0`` leaves every client without
    a validation split and is refused with its own message.
    """
    if data.val_fraction == 0 and clients:
        raise PartitionError("data.val_fraction=0 leaves every client without a validation split, but the reported "
                             "round is selected on validation accuracy: set data.val_fraction > 0 (e.g. 0.15)")
    for split in ("train", "test", "val"):
        empty = [c for c in clients if c.split(split)[1].numel() == 0]
        if not empty:
            continue
        first = empty[0]
        labels = torch.cat([first.split(s)[1] for s in SPLITS])
        fixes = ([] if part.scheme in _NO_MIN_SIZE else [f"raise partition.min_size (now {part.min_size})"])
        if split != "train":
            fixes.append(f"raise data.{split}_fraction (now {getattr(data, split + '_fraction')})")
        fixes.append("use fewer data.num_clients")
        raise PartitionError(
            f"{len(empty)} of {len(clients)} clients would have an empty {split} split (client {first.client_id}: "
            f"{_count(labels.numel(), 'sample')} in {_count(int(labels.unique().numel()), 'class')}, each class split "
            f"on its own): "
            f"{', '.join(fixes[:-1])}{' or ' if len(fixes) > 1 else ''}{fixes[-1]}")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}{'es' if noun.endswith('s') else 's'}"
