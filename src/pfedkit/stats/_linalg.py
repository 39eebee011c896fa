"""Small float64 linear-algebra helpers shared by the statistics modules (private).

Everything here works on batches: a tensor of shape (..., d, d) is a batch of matrices.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Relative jitter ladder tried by `safe_cholesky` when a matrix is only positive
# semi-definite: 0, then 1e-12 .. 1e-2 times the mean diagonal, growing tenfold.
_JITTER_START = 1e-12
_JITTER_STOP = 1e-2


def symmetrize(a: Tensor) -> Tensor:
    """(a + a^T) / 2 over the last two dimensions; shape (..., d, d) unchanged."""
    return 0.5 * (a + a.transpose(-1, -2))


def eye_like(a: Tensor) -> Tensor:
    """Identity of a's trailing size, same dtype and device, broadcastable to a."""
    return torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)


def batch_trace(a: Tensor) -> Tensor:
    """Trace over the last two dimensions: (..., d, d) -> (...)."""
    return a.diagonal(dim1=-2, dim2=-1).sum(-1)


def safe_cholesky(a: Tensor) -> Tensor:
    """Lower Cholesky factor of a symmetric positive semi-definite batch (..., d, d).

    Tries the matrix as given; entries whose factorisation fails get a diagonal jitter
    of 1e-12 times their mean diagonal (1 if that is not positive), growing tenfold up
    to 1e-2. A zero matrix therefore factors as about 1e-12 * I rather than failing.
    Raises ValueError for non-finite input or a matrix that is far from PSD.
    """
    if not torch.isfinite(a).all():
        raise ValueError("safe_cholesky: matrix has NaN or Inf entries")
    a = symmetrize(a)
    lower, info = torch.linalg.cholesky_ex(a)
    failed = info > 0
    if not failed.any():
        return lower
    d = a.shape[-1]
    scale = batch_trace(a) / d
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    eye = eye_like(a)
    jitter = _JITTER_START
    while jitter <= _JITTER_STOP * 1.0001:
        shifted = a + (jitter * scale)[..., None, None] * eye
        candidate, cand_info = torch.linalg.cholesky_ex(shifted)
        lower = torch.where(failed[..., None, None], candidate, lower)
        failed = failed & (cand_info > 0)
        if not failed.any():
            return lower
        jitter *= 10.0
    raise ValueError("safe_cholesky: matrix is not positive semi-definite even with jitter")


def psd_solve(a: Tensor, b: Tensor) -> Tensor:
    """Solve a x = b for a symmetric PSD batch a (..., d, d) and b (..., d, m) -> (..., d, m)."""
    return torch.cholesky_solve(b, safe_cholesky(a))


class ClassMeansShape:
    """``num_classes`` (C) and ``dim`` (d) of a dataclass whose ``means`` field is (C, d)."""

    means: Tensor

    @property
    def num_classes(self) -> int:
        """C."""
        return int(self.means.shape[0])

    @property
    def dim(self) -> int:
        """d, the feature dimension."""
        return int(self.means.shape[1])
