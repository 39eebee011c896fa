"""Corruptions: severity ordering on natural images, determinism, shapes, errors, JPEG fidelity."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pfedkit.core.errors import ConfigError
from pfedkit.data.corruptions import CORRUPTIONS, corrupt, corruption_level
from pfedkit.data.corruptions.jpeg import jpeg

RANDOM_TYPES = {"gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "motion_blur", "fog"}


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """(4, 3, 32, 32) crops of the photos that ship with scikit-image, box-downsampled."""
    from skimage import data

    crops = []
    for name in ("chelsea", "astronaut", "coffee", "rocket"):
        img = getattr(data, name)()
        side = min(img.shape[:2])
        crops.append(torch.as_tensor(img[:side, :side].copy()).permute(2, 0, 1).float() / 255)
    return torch.stack([F.adaptive_avg_pool2d(c[None], 32)[0] for c in crops])


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean()))


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_distortion_grows_with_severity(photos: torch.Tensor, name: str) -> None:
    clean = corrupt(photos, name, 0, torch.Generator().manual_seed(0))
    assert torch.equal(clean, photos)
    scores = [psnr(corrupt(photos, name, s, torch.Generator().manual_seed(0)), photos) for s in range(1, 6)]
    assert scores[0] < 45, f"{name} severity 1 barely changes the image: {scores}"
    assert all(a > b for a, b in zip(scores, scores[1:])), f"{name} PSNR not decreasing: {scores}"


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_deterministic_given_the_generator(photos: torch.Tensor, name: str) -> None:
    out1 = corrupt(photos, name, 3, torch.Generator().manual_seed(7))
    out2 = corrupt(photos, name, 3, torch.Generator().manual_seed(7))
    out3 = corrupt(photos, name, 3, torch.Generator().manual_seed(8))
    assert torch.equal(out1, out2)
    assert torch.equal(out1, out3) != (name in RANDOM_TYPES)


@pytest.mark.parametrize("name", CORRUPTIONS)
@pytest.mark.parametrize("shape", [(3, 1, 28, 28), (2, 3, 8, 8), (2, 3, 20, 36)])
def test_shapes_range_and_input_untouched(name: str, shape: tuple[int, ...]) -> None:
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    before = x.clone()
    out = corrupt(x, name, 5, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(x, before)
    assert not torch.equal(out, x)


def test_unknown_name_or_severity_lists_allowed_values() -> None:
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(ConfigError, match="gaussian_noise.*fog"):
        corrupt(x, "rain", 1, torch.Generator())
    for bad in (6, -1, 2.0, True):
        with pytest.raises(ConfigError, match="0, 1, 2, 3, 4, 5"):
            corrupt(x, "fog", bad, torch.Generator())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        corrupt(torch.rand(1, 2, 8, 8), "fog", 1, torch.Generator())
    assert corruption_level("gaussian_noise", 1) == 0.04
    assert torch.equal(corrupt(x, "jpeg", np.int64(2), torch.Generator()), corrupt(x, "jpeg", 2, torch.Generator()))


def test_jpeg_matches_pillow(photos: torch.Tensor) -> None:
    from PIL import Image

    x8 = torch.round(photos * 255) / 255
    for quality in (70, 30, 12):
        ours = jpeg(x8, quality)
        theirs = []
        for img in x8:
            buf = io.BytesIO()
            Image.fromarray((img.permute(1, 2, 0) * 255).round().byte().numpy()).save(
                buf, format="JPEG", quality=quality
            )
            theirs.append(torch.as_tensor(np.array(Image.open(buf))).permute(2, 0, 1).float() / 255)
        pil = torch.stack(theirs)
        assert psnr(ours, pil) > 35  # same codec up to rounding and upsampling details
        assert abs(psnr(ours, x8) - psnr(pil, x8)) < 0.3


def test_whole_batch_is_vectorised() -> None:
    """500 images per type in well under a second of CPU each (no per-image Python loop).

    CPU time rather than wall time, so that other processes on a shared machine do not count.
    """
    x = torch.rand(500, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for name in CORRUPTIONS:
        start = time.process_time()
        corrupt(x, name, 3, torch.Generator().manual_seed(0))
        assert time.process_time() - start < 1.5, name
