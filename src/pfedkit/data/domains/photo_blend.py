"""MNIST-M-style blends: a digit combined with a random crop of a colour photo.

As in the original MNIST-M recipe, each output pixel is ``|patch - digit|`` per channel, so
the digit shows as an inverted-colour stroke over the photo texture. The photos are the
colour sample images bundled with scikit-image (no download), taken at several scales so
that crops range from fine texture to recognisable structure.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# Colour photos bundled inside the scikit-image wheel (no pooch download needed).
PHOTO_NAMES = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "stereo_motorcycle",
)
PHOTO_SCALES = (1.0, 0.5, 0.25)


def skimage_photo_bank(min_side: int = 32) -> list[np.ndarray]:
    """Bundled scikit-image colour photos at each of :data:`PHOTO_SCALES`.

    Args:
        min_side: smallest height/width a scaled photo must keep (the crop size).

    Returns:
        list of (H, W, 3) float32 arrays in [0, 1], in a fixed order.

    Raises:
        RuntimeError: none of the photos can be loaded.
    """
    import skimage.data

    bank: list[np.ndarray] = []
    for name in PHOTO_NAMES:
        try:
            photo = getattr(skimage.data, name)()
        except Exception:  # noqa: BLE001 - a photo missing from this scikit-image build
            continue
        if isinstance(photo, tuple):  # stereo pairs: keep the left view
            photo = photo[0]
        if photo.ndim != 3 or photo.shape[2] < 3:
            continue
        image = Image.fromarray(np.ascontiguousarray(photo[:, :, :3]))
        for scale in PHOTO_SCALES:
            width, height = round(image.width * scale), round(image.height * scale)
            if min(width, height) < min_side:
                continue
            scaled = image if scale == 1.0 else image.resize((width, height), Image.Resampling.BOX)
            bank.append(np.asarray(scaled, dtype=np.float32) / 255.0)
    if not bank:
        raise RuntimeError("no scikit-image colour sample photos could be loaded")
    return bank


def blend_onto_photos(
    digits: np.ndarray, bank: list[np.ndarray], rng: np.random.Generator
) -> np.ndarray:
    """Blend greyscale digits onto random photo crops: ``out = |crop - digit|``.

    Args:
        digits: (N, H, W) float32 greyscale digits in [0, 1] (1 = stroke).
        bank: photos from :func:`skimage_photo_bank`, each (h, w, 3) float32 in [0, 1]
            with h >= H and w >= W.
        rng: chooses the photo, crop position and a horizontal flip of each crop.

    Returns:
        (N, 3, H, W) float32 RGB images in [0, 1].
    """
    n, height, width = digits.shape
    which = rng.integers(len(bank), size=n)
    flips = rng.random(n) < 0.5
    crops = np.empty((n, height, width, 3), dtype=np.float32)
    for i in range(n):
        photo = bank[which[i]]
        top = int(rng.integers(photo.shape[0] - height + 1))
        left = int(rng.integers(photo.shape[1] - width + 1))
        crop = photo[top : top + height, left : left + width]
        crops[i] = crop[:, ::-1] if flips[i] else crop
    blended = np.abs(crops - digits[..., None])
    return np.ascontiguousarray(blended.transpose(0, 3, 1, 2))
