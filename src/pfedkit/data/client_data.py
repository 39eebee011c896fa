"""Per-client train/val/test tensors held in memory."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class ClientData:
    """One client's data, split into train / val / test.

    Attributes:
        client_id: index of the client in [0, num_clients).
        x_train, x_val, x_test: (n, C, H, W) float32 images.
        y_train, y_val, y_test: (n,) int64 labels.
        num_classes: number of classes of the whole task.
        meta: scenario facts (corruption, domain, heldout, ...) from the partition.
        domain_train, domain_val, domain_test: optional (n,) int64 domain ids.
        cache: values derived from this client's data by a fixed function (e.g. frozen-backbone
            features), keyed by what computed them; shared by every round and every method that
            runs on this object.
    """

    client_id: int
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    meta: dict[str, Any] = field(default_factory=dict)
    domain_train: torch.Tensor | None = None
    domain_val: torch.Tensor | None = None
    domain_test: torch.Tensor | None = None
    cache: dict[Any, torch.Tensor] = field(default_factory=dict, repr=False, compare=False)
    train_pack: TrainPack | None = field(default=None, init=False, repr=False, compare=False)
    """Set by `pack_training_splits`: the pack ``x_train`` / ``y_train`` are views into (not
    carried over by ``dataclasses.replace``, whose new inputs are not in the pack)."""

    @property
    def heldout(self) -> bool:
        """True for a new client that never trains (evaluated only)."""
        return bool(self.meta.get("heldout", False))

    @property
    def num_train(self) -> int:
        return int(self.y_train.shape[0])

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) of ``"train"``, ``"val"`` or ``"test"``."""
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    def class_counts(self, split: str = "train") -> torch.Tensor:
        """(num_classes,) int64 label histogram of a split."""
        return torch.bincount(self.split(split)[1], minlength=self.num_classes)

    def to(self, device: torch.device | str) -> "ClientData":
        """Move every tensor (cached ones included) to ``device`` (in place; returns self)."""
        for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test",
                     "domain_train", "domain_val", "domain_test"):
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, t.to(device))
        self.cache = {k: v.to(device) for k, v in self.cache.items()}
        if self.train_pack is not None and self.train_pack.x.device != self.x_train.device:
            self.train_pack = None  # moved on its own: no longer a view into the pack
        return self


@dataclass
class TrainPack:
    """Several clients' training splits in one tensor each, on one device.

    Attributes:
        x: (N, ...) the training rows of every packed client, client after client.
        y: (N,) their labels.
        starts: client id -> index of the client's first row (its rows are
            ``starts[k] : starts[k] + n_k``).
    """

    x: torch.Tensor
    y: torch.Tensor
    starts: dict[int, int]


def pack_training_splits(clients: list[ClientData]) -> TrainPack:
    """Put the clients' training splits into one `TrainPack` on their device, once per run.

    Each client's ``x_train`` and ``y_train`` become views into the pack (same values, no second
    copy), so the batched path gathers a minibatch of many clients with one index operation and
    no per-round copy. Clients already packed together are returned as they are.
    """
    first = clients[0].train_pack if clients else None
    if first is not None and all(c.train_pack is first for c in clients):
        return first
    starts, offset = {}, 0
    for c in clients:
        starts[c.client_id] = offset
        offset += c.num_train
    x = torch.cat([c.x_train for c in clients]) if clients else torch.zeros(0)
    y = torch.cat([c.y_train for c in clients]) if clients else torch.zeros(0, dtype=torch.int64)
    pack = TrainPack(x, y, starts)
    for c in clients:
        start, n = starts[c.client_id], c.num_train
        c.x_train, c.y_train, c.train_pack = x[start:start + n], y[start:start + n], pack
    return pack


def stratified_split(
    labels: np.ndarray, val_fraction: float, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split positions 0..n-1 into train/val/test, per class where the class is large enough.

    Each class's samples are shuffled and cut at round(n_c * fraction); a class keeps at least one
    training sample. Returns sorted position arrays (train, val, test).
    """
    train, val, test = [], [], []
    for c in np.unique(labels):
        pos = rng.permutation(np.flatnonzero(labels == c))
        n = len(pos)
        n_test = min(int(round(n * test_fraction)), n - 1)
        n_val = min(int(round(n * val_fraction)), n - 1 - n_test)
        test.append(pos[:n_test])
        val.append(pos[n_test:n_test + n_val])
        train.append(pos[n_test + n_val:])
    cat = lambda parts: np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)  # noqa: E731
    return cat(train), cat(val), cat(test)
