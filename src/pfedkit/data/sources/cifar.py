"""CIFAR-10 and CIFAR-100 from their python pickle batches.

Layout (as unpacked from the official ``*-python.tar.gz`` archives):

- ``<root>/cifar-10-batches-py/data_batch_1`` … ``data_batch_5`` and ``test_batch``
- ``<root>/cifar-100-python/train`` and ``test`` (fine labels are used)

Each batch is a pickled dict with ``data`` (N, 3072) uint8, stored channel-major (1024
red, then green, then blue values, each row-major 32x32), and ``labels`` or
``fine_labels``. Only unpickle batches you obtained from a source you trust.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pfedkit.core.errors import DatasetNotFoundError
from pfedkit.data.pool import Pool
from pfedkit.data.registry import register_source
from pfedkit.data.sources.damaged import damaged, reading

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR100_DIR = "cifar-100-python"
REPLACE_HINT = "extract it again from the official cifar-10-python.tar.gz / cifar-100-python.tar.gz archive"


def read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Unpickle one CIFAR batch file.

    Args:
        path: a batch file such as ``data_batch_1`` or ``train``.
        label_key: ``"labels"`` (CIFAR-10) or ``"fine_labels"`` (CIFAR-100).

    Returns:
        images (N, 3, 32, 32) uint8 and labels (N,) int64.

    Raises:
        DatasetCorruptError: the file is truncated, not a pickle, or not a CIFAR batch.
    """
    with reading(path, REPLACE_HINT), Path(path).open("rb") as f:
        batch: Any = pickle.load(f, encoding="bytes")
    if not isinstance(batch, dict):
        raise damaged(path, f"a CIFAR batch is a pickled dict, this holds a {type(batch).__name__}", REPLACE_HINT)
    entries = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in entries or label_key not in entries:
        raise damaged(path, f"expected keys 'data' and {label_key!r}, found {sorted(map(str, entries))}",
                      REPLACE_HINT)
    with reading(path, REPLACE_HINT):
        data = np.asarray(entries["data"], dtype=np.uint8)
        labels = np.asarray(entries[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (data.shape[0],):
        raise damaged(path, f"expected (N, 3072) data and (N,) labels, got {data.shape}, {labels.shape}",
                      REPLACE_HINT)
    return data.reshape(-1, 3, 32, 32), labels


def _pool_from_batches(paths: list[Path], label_key: str, num_classes: int, name: str) -> Pool:
    """Concatenate batches in the given order into a Pool of (N, 3, 32, 32) float32 in [0, 1]."""
    parts = [read_cifar_batch(p, label_key) for p in paths]
    x = torch.from_numpy(np.concatenate([p[0] for p in parts])).to(torch.float32).div_(255.0)
    y = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    return Pool(x=x, y=y, num_classes=num_classes, name=name)


def _batch_number(path: Path) -> int:
    match = re.search(r"(\d+)$", path.name)
    return int(match.group(1)) if match else 0


@register_source("cifar10")
def load_cifar10(root: Path) -> Pool:
    """CIFAR-10: data_batch_1..5 then test_batch → x (N, 3, 32, 32) float32 in [0, 1], 10 classes."""
    directory = Path(root) / CIFAR10_DIR
    train = sorted(directory.glob("data_batch_*"), key=_batch_number)
    test = directory / "test_batch"
    if not train or not test.is_file():
        raise DatasetNotFoundError(
            f"cifar10: put the CIFAR-10 python batches (data_batch_1..5, test_batch) under {directory}"
        )
    return _pool_from_batches([*train, test], "labels", 10, "cifar10")


@register_source("cifar100")
def load_cifar100(root: Path) -> Pool:
    """CIFAR-100: train then test → x (N, 3, 32, 32) float32 in [0, 1], 100 fine classes."""
    directory = Path(root) / CIFAR100_DIR
    paths = [directory / "train", directory / "test"]
    if not all(p.is_file() for p in paths):
        raise DatasetNotFoundError(
            f"cifar100: put the CIFAR-100 python files (train, test) under {directory}"
        )
    return _pool_from_batches(paths, "fine_labels", 100, "cifar100")
