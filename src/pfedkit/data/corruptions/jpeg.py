"""JPEG compression artefacts: a baseline JPEG codec round trip, vectorised over the batch.

The pipeline follows baseline JPEG (ITU T.81 / JFIF): 8-bit pixels, RGB -> YCbCr, 4:2:0 chroma
subsampling, level shift, 8x8 block DCT-II, quantisation with the Annex K tables scaled by the
IJG quality rule, rounding, and the inverse steps (chroma upsampled bilinearly, close to
libjpeg's "fancy" upsampling). Entropy coding is lossless and therefore skipped.

Severity constants (severity 1..5): quality 70, 45, 30, 20, 12.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

JPEG_QUALITY = (70, 45, 30, 20, 12)

_LUMA_TABLE = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
_CHROMA_TABLE = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
)


def quant_table(base: tuple[tuple[int, ...], ...], quality: int) -> torch.Tensor:
    """(8, 8) float32 quantisation steps: ``base`` scaled by the IJG rule for quality 1..100."""
    quality = min(max(int(quality), 1), 100)
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    table = torch.tensor(base, dtype=torch.int64)
    return ((table * scale + 50) // 100).clamp(1, 255).float()


def dct_matrix() -> torch.Tensor:
    """(8, 8) orthonormal DCT-II matrix D: coefficients of a block B are D B D^T."""
    k = torch.arange(8, dtype=torch.float64)
    d = torch.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d.float()


def code_blocks(planes: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Quantise the 8x8 block DCT of level-shifted planes and reconstruct them.

    Args:
        planes: (N, P, H, W) values in [-128, 127], H and W multiples of 8.
        table: (8, 8) quantisation steps.

    Returns:
        (N, P, H, W) reconstruction (not rounded or clipped).
    """
    n, p, h, w = planes.shape
    d = dct_matrix()
    basis = torch.kron(d, d).to(planes)  # (64, 64): flattened block -> flattened coefficients
    blocks = planes.reshape(n, p, h // 8, 8, w // 8, 8).transpose(3, 4).reshape(-1, 64)
    table = table.reshape(64).to(planes)
    coef = torch.round((blocks @ basis.T) / table) * table
    rebuilt = (coef @ basis).reshape(n, p, h // 8, w // 8, 8, 8)
    return rebuilt.transpose(3, 4).reshape(n, p, h, w)


def jpeg(x: torch.Tensor, quality: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """JPEG round trip at ``quality`` (1..100) of (N, C, H, W) images in [0, 1], C = 1 or 3.

    Deterministic. Sizes that are not multiples of the 16-pixel coding unit are edge-padded
    and cropped back. Returns values on the 8-bit grid k / 255.
    """
    n, c, h, w = x.shape
    unit = 16 if c == 3 else 8
    pad_h, pad_w = (-h) % unit, (-w) % unit
    v = torch.round(x.clamp(0, 1) * 255)
    if pad_h or pad_w:
        v = F.pad(v, (0, pad_w, 0, pad_h), mode="replicate")
    luma_q, chroma_q = quant_table(_LUMA_TABLE, quality), quant_table(_CHROMA_TABLE, quality)
    if c == 1:
        out = code_blocks(v - 128, luma_q) + 128
    else:
        ycc = _rgb_to_ycbcr(v)
        luma = torch.round(ycc[:, :1])
        chroma = torch.round(F.avg_pool2d(ycc[:, 1:], 2))
        luma = code_blocks(luma - 128, luma_q) + 128
        chroma = code_blocks(chroma - 128, chroma_q) + 128
        chroma = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False)
        out = _ycbcr_to_rgb(torch.cat([luma, chroma], dim=1))
    out = torch.round(out).clamp(0, 255)[:, :, :h, :w]
    return out / 255


_RGB_TO_YCBCR = (
    (0.299, 0.587, 0.114),
    (-0.168736, -0.331264, 0.5),
    (0.5, -0.418688, -0.081312),
)
_YCBCR_TO_RGB = (
    (1.0, 0.0, 1.402),
    (1.0, -0.344136, -0.714136),
    (1.0, 1.772, 0.0),
)


def _rgb_to_ycbcr(v: torch.Tensor) -> torch.Tensor:
    """JFIF full-range conversion of (N, 3, H, W) 8-bit-scale RGB."""
    out = _mix(v, _RGB_TO_YCBCR)
    out[:, 1:] += 128
    return out


def _ycbcr_to_rgb(v: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_rgb_to_ycbcr`."""
    shifted = v.clone()
    shifted[:, 1:] -= 128
    return _mix(shifted, _YCBCR_TO_RGB)


def _mix(v: torch.Tensor, matrix: tuple[tuple[float, ...], ...]) -> torch.Tensor:
    """Per-pixel 3x3 colour matrix: (N, 3, H, W) -> (N, 3, H, W), as one batched matmul."""
    weight = torch.tensor(matrix, dtype=v.dtype, device=v.device)
    n, c, h, w = v.shape
    return (weight @ v.reshape(n, c, h * w)).reshape(n, c, h, w)
