"""CIFAR-10-C / CIFAR-100-C: pre-corrupted test sets stored as one ``.npy`` per corruption.

Layout (Hendrycks & Dietterich's release): ``<dir>/<corruption>.npy`` of shape
(5 * n, 32, 32, 3) uint8 holding severities 1..5 in order (n = 10,000 for the release),
and ``<dir>/labels.npy`` of shape (5 * n,) with the labels repeated per severity.
Arrays are memory-mapped so only the requested severity is read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pfedkit.core.errors import ConfigError, DatasetNotFoundError
from pfedkit.data.pool import Pool
from pfedkit.data.sources.damaged import damaged, reading

NUM_SEVERITIES = 5
LABELS_FILE = "labels.npy"
CIFAR_C_DIRS = {"cifar10": "CIFAR-10-C", "cifar100": "CIFAR-100-C"}
REPLACE_HINT = "replace it with the file from the CIFAR-10-C / CIFAR-100-C release"


def _missing_hint(directory: Path) -> str:
    return (
        f"put the CIFAR-C .npy files (<corruption>.npy and {LABELS_FILE}, from the "
        f"CIFAR-10-C/CIFAR-100-C release) under {directory}"
    )


def find_cifar_c(root: Path, base: str = "cifar10") -> Path:
    """Directory of the corrupted set for ``base`` (``"cifar10"`` or ``"cifar100"``) under ``root``.

    Raises:
        ConfigError: unknown base.
        DatasetNotFoundError: ``<root>/CIFAR-10-C`` (or ``CIFAR-100-C``) lacks ``labels.npy``.
    """
    if base not in CIFAR_C_DIRS:
        raise ConfigError(f"unknown CIFAR-C base {base!r}; choose one of {', '.join(CIFAR_C_DIRS)}")
    directory = Path(root) / CIFAR_C_DIRS[base]
    if not (directory / LABELS_FILE).is_file():
        raise DatasetNotFoundError(f"{CIFAR_C_DIRS[base]}: {_missing_hint(directory)}")
    return directory


def list_cifar_c_corruptions(directory: Path) -> list[str]:
    """Sorted corruption names available in ``directory`` (every ``*.npy`` but ``labels.npy``)."""
    return sorted(p.stem for p in Path(directory).glob("*.npy") if p.name != LABELS_FILE)


def load_cifar_c(
    directory: Path, corruption: str, severity: int, num_classes: int | None = None
) -> Pool:
    """Load one (corruption, severity) slice of a CIFAR-C directory.

    Args:
        directory: folder with ``<corruption>.npy`` and ``labels.npy``.
        corruption: e.g. ``"gaussian_noise"``; see :func:`list_cifar_c_corruptions`.
        severity: 1 (mildest) to 5.
        num_classes: number of classes; None infers ``max(label) + 1`` over the slice.

    Returns:
        Pool with x (n, 3, 32, 32) float32 in [0, 1], y (n,) int64, named
        ``"<dirname>/<corruption>/<severity>"``.

    Raises:
        ConfigError: severity outside 1..5.
        DatasetNotFoundError: the directory, its labels or the corruption file is missing.
    """
    directory = Path(directory)
    if not 1 <= severity <= NUM_SEVERITIES:
        raise ConfigError(f"CIFAR-C severity must be in 1..{NUM_SEVERITIES}, got {severity}")
    labels_path = directory / LABELS_FILE
    if not labels_path.is_file():
        raise DatasetNotFoundError(f"CIFAR-C: {_missing_hint(directory)}")
    images_path = directory / f"{corruption}.npy"
    if not images_path.is_file():
        available = ", ".join(list_cifar_c_corruptions(directory)) or "none"
        raise DatasetNotFoundError(
            f"CIFAR-C: no {images_path.name} in {directory} (available: {available})"
        )
    with reading(images_path, REPLACE_HINT):
        images = np.load(images_path, mmap_mode="r")
    with reading(labels_path, REPLACE_HINT):
        labels = np.load(labels_path, mmap_mode="r")
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] % NUM_SEVERITIES:
        raise damaged(images_path, f"expected (5 * n, H, W, 3) images, got {images.shape}", REPLACE_HINT)
    per_severity = images.shape[0] // NUM_SEVERITIES
    rows = slice((severity - 1) * per_severity, severity * per_severity)
    if labels.shape[0] == images.shape[0]:
        y_np = np.asarray(labels[rows], dtype=np.int64)
    elif labels.shape[0] == per_severity:
        y_np = np.asarray(labels, dtype=np.int64)
    else:
        raise damaged(labels_path, f"{labels.shape[0]} labels for {images.shape[0]} images in {images_path.name}",
                      REPLACE_HINT)
    x = torch.from_numpy(np.array(images[rows], dtype=np.uint8)).permute(0, 3, 1, 2)
    x = x.to(torch.float32).div_(255.0).contiguous()
    classes = int(y_np.max()) + 1 if num_classes is None else num_classes
    return Pool(
        x=x,
        y=torch.from_numpy(y_np),
        num_classes=classes,
        name=f"{directory.name}/{corruption}/{severity}",
    )
