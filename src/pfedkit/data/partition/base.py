"""The result of partitioning: index lists per client plus a content hash."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Partition:
    """Which pool samples each client holds.

    Attributes:
        client_indices: one int64 array of pool indices per client (disjoint).
        client_meta: one dict per client with scenario facts (e.g. corruption, domain).
    """

    client_indices: list[np.ndarray]
    client_meta: list[dict[str, Any]] = field(default_factory=list)

    @property
    def num_clients(self) -> int:
        return len(self.client_indices)

    @property
    def hash(self) -> str:
        """SHA-256 over every client's sorted index list and metadata: equal iff same content."""
        h = hashlib.sha256()
        for i, idx in enumerate(self.client_indices):
            h.update(f"client{i}:{len(idx)}:".encode())
            h.update(np.sort(np.asarray(idx, dtype=np.int64)).tobytes())
            if self.client_meta:
                h.update(repr(sorted(self.client_meta[i].items())).encode())
        return h.hexdigest()

    def sizes(self) -> np.ndarray:
        """(num_clients,) number of samples per client."""
        return np.array([len(i) for i in self.client_indices], dtype=np.int64)

    def label_counts(self, labels: np.ndarray, num_classes: int) -> np.ndarray:
        """(num_clients, num_classes) per-client label histogram."""
        return np.stack([np.bincount(labels[idx], minlength=num_classes) for idx in self.client_indices])
