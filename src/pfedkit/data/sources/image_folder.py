"""Multi-domain image folders of the DomainNet / Office-Caltech kind.

Layout: ``<folder>/<domain>/<class>/<image>.png|jpg|jpeg|bmp``. Domains and classes are the
sorted sub-folder names; a class id means the same class in every domain, even when a
domain lacks some classes. Images are decoded with Pillow, converted to RGB and resized to
one common size. The decoded uint8 array can be cached as an ``.npz`` keyed by the file
list, so later loads skip decoding.

Registered sources: ``office-caltech`` (``<root>/office-caltech``) and ``domainnet``
(``<root>/domainnet``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pfedkit.core.errors import DatasetNotFoundError
from pfedkit.data.pool import Pool
from pfedkit.data.registry import register_source
from pfedkit.data.sources.damaged import READ_ERRORS, reading

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
_CACHE_VERSION = 1


def _sorted_subdirs(directory: Path) -> list[Path]:
    return sorted((p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.name)


def scan_image_folder(folder: Path) -> tuple[list[tuple[Path, int, int]], list[str], list[str]]:
    """List the images of a ``<domain>/<class>/<file>`` tree in a fixed order.

    Returns:
        (files, domain_names, class_names) where files holds (path, domain_id, class_id)
        sorted by domain, class, then file name.
    """
    domains = _sorted_subdirs(folder)
    class_names = sorted({c.name for d in domains for c in _sorted_subdirs(d)})
    class_ids = {name: i for i, name in enumerate(class_names)}
    files: list[tuple[Path, int, int]] = []
    for domain_id, domain_dir in enumerate(domains):
        for class_dir in _sorted_subdirs(domain_dir):
            for path in sorted(class_dir.iterdir(), key=lambda p: p.name):
                if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
                    files.append((path, domain_id, class_ids[class_dir.name]))
    return files, [d.name for d in domains], class_names


def decode_image(path: Path, size: tuple[int, int]) -> np.ndarray:
    """Decode one image to RGB and resize it (bilinear, antialiased).

    Args:
        path: image file.
        size: (height, width) in pixels.

    Returns:
        (height, width, 3) uint8 array.

    Raises:
        DatasetCorruptError: Pillow cannot open or decode the file (truncated, not an image).
    """
    height, width = size
    with reading(path, "replace that image with an intact copy or delete it"), Image.open(path) as image:
        image.draft("RGB", (width, height))  # JPEG: let the decoder downscale cheaply
        rgb = image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8)


def _read_cache(path: Path, count: int, size: tuple[int, int]) -> np.ndarray | None:
    """The cached (count, H, W, 3) uint8 pixels, or None when the cache file is damaged or does
    not match (it is then rebuilt from the images and replaced)."""
    try:
        with np.load(path) as cached:
            pixels = cached["pixels"]
    except READ_ERRORS:
        return None
    return pixels if pixels.shape == (count, *size, 3) and pixels.dtype == np.uint8 else None


def _cache_key(folder: Path, files: list[tuple[Path, int, int]], size: tuple[int, int]) -> str:
    h = hashlib.sha256(f"v{_CACHE_VERSION}:{size}".encode())
    for path, domain_id, class_id in files:
        h.update(f"{path.relative_to(folder)}:{path.stat().st_size}:{domain_id}:{class_id}\n".encode())
    return h.hexdigest()[:16]


def load_image_folder(
    folder: Path,
    name: str,
    size: tuple[int, int] = (32, 32),
    cache_dir: Path | None = None,
) -> Pool:
    """Load every image of ``<folder>/<domain>/<class>/*`` into one multi-domain Pool.

    Args:
        folder: the dataset folder.
        name: the Pool's name (also names the cache file).
        size: (height, width) every image is resized to, in pixels.
        cache_dir: if given, decoded images are stored there as ``<name>-<H>x<W>-<key>.npz``
            (key hashes the file list and sizes) and reused by later loads.

    Returns:
        Pool with x (N, 3, H, W) float32 in [0, 1], y (N,) int64 class ids (sorted class
        folder names), domain (N,) int64 and domain_names (sorted domain folder names).

    Raises:
        DatasetNotFoundError: the folder is missing or holds no images.
        DatasetCorruptError: an image cannot be decoded (the message names it). A damaged cache
            file is not an error: it is rebuilt from the images.
    """
    folder = Path(folder)
    layout_hint = f"put images as {folder}/<domain>/<class>/*.png|jpg"
    if not folder.is_dir():
        raise DatasetNotFoundError(f"{name}: {folder} does not exist; {layout_hint}")
    files, domain_names, class_names = scan_image_folder(folder)
    if not files:
        raise DatasetNotFoundError(f"{name}: no images found in {folder}; {layout_hint}")
    cache_path = None
    if cache_dir is not None:
        key = _cache_key(folder, files, size)
        cache_path = Path(cache_dir) / f"{name}-{size[0]}x{size[1]}-{key}.npz"
    pixels = _read_cache(cache_path, len(files), size) if cache_path is not None and cache_path.is_file() else None
    if pixels is None:
        pixels = np.stack([decode_image(path, size) for path, _, _ in files])
        if cache_path is not None:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_path.with_name(f".{cache_path.name}.{os.getpid()}.tmp.npz")
            np.savez(tmp, pixels=pixels)
            os.replace(tmp, cache_path)
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).to(torch.float32).div_(255.0).contiguous()
    y = torch.tensor([c for _, _, c in files], dtype=torch.int64)
    domain = torch.tensor([d for _, d, _ in files], dtype=torch.int64)
    return Pool(
        x=x,
        y=y,
        num_classes=len(class_names),
        name=name,
        domain=domain,
        domain_names=tuple(domain_names),
    )


@register_source("office-caltech")
def load_office_caltech(root: Path) -> Pool:
    """Office-Caltech-10 from ``<root>/office-caltech/<domain>/<class>/*``, 32x32 RGB."""
    return load_image_folder(Path(root) / "office-caltech", "office-caltech", cache_dir=Path(root) / "cache")


@register_source("domainnet")
def load_domainnet(root: Path) -> Pool:
    """DomainNet (or a class subset of it) from ``<root>/domainnet/<domain>/<class>/*``, 32x32 RGB."""
    return load_image_folder(Path(root) / "domainnet", "domainnet", cache_dir=Path(root) / "cache")
