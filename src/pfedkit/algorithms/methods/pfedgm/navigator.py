"""The navigator and the dual objective (paper R3-R5, spec §3): Gaussian logits around shared
class anchors, L_shared on real and virtual features, L_local towards the personal means, and
the navigator's start after the warm-up round."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pfedkit.algorithms.methods.pfedgm.keys import ANCHORS, LOG_SCALE
from pfedkit.algorithms.toolkit.batched_training import weighted_cross_entropy
from pfedkit.core.payload import Payload
from pfedkit.stats import STATS_DTYPE, GlobalPrior

LogitsFn = Callable[[Tensor], Tensor]


NAVIGATOR_COORDS = ("logit_weights", "anchors")
"""What the optimiser steps on (``hp.pfedgm.navigator_coords``); the logits and the payload are the same."""


def to_coords(anchors: Tensor, log_scale: Tensor, coords: str, step: float = 1.0) -> Tensor:
    """Anchors m_c -> the trained coordinates: u_c = exp(s) m_c (``logit_weights``) or m_c
    (``anchors``), divided by sqrt(step), so an SGD step (momentum, no weight decay) on them
    moves u_c or m_c ``step`` times as far.

    Args:
        anchors: (..., C, d); log_scale: (...) with the same leading shape (stacked clients).
    """
    base = anchors * log_scale.exp()[..., None, None] if coords == "logit_weights" else anchors
    return base if step == 1.0 else base / math.sqrt(step)


def anchors_from_coords(position: Tensor, log_scale: Tensor, coords: str, step: float = 1.0) -> Tensor:
    """Inverse of `to_coords`: (..., C, d) trained coordinates -> anchors m_c (differentiable)."""
    base = position if step == 1.0 else position * math.sqrt(step)
    return base * (-log_scale).exp()[..., None, None] if coords == "logit_weights" else base


@dataclass
class Navigator:
    """The navigator (R5): global class anchors m_c and a log-scale s, shared with FedAvg.

    Gaussian logits ``l_c(z) = -1/2 exp(s) ||z - m_c||^2``. Used for training only.

    The same logits expand to ``exp(s) m_c . z - exp(s) ||m_c||^2 / 2`` (plus a term equal for
    every class): a linear head with weights u_c = exp(s) m_c and a bias tied to them. A step of
    size lr on m_c moves those weights by exp(2s) * lr * grad, where a linear head moves by
    lr * grad; with exp(s) about 7 after round 0 that made the anchors the fastest-moving and
    noisiest part of training, and pFedGM fell 2 points behind a linear head once clients had
    enough data for 16 steps a round (docs/pfedgm.md, component audit). So by default the
    optimiser steps on u_c and s (``coords = logit_weights``); ``anchors`` steps on m_c and s.
    ``step`` multiplies the step on u_c (or m_c) through the coordinates (`to_coords`).

    Attributes:
        position: (C, d) float32, the trained coordinates of the anchors (`to_coords`).
        log_scale: () float32.
        coords: one of `NAVIGATOR_COORDS`.
        step: the step multiplier of `to_coords`.
    """

    position: Tensor
    log_scale: Tensor
    coords: str = "logit_weights"
    step: float = 1.0

    @classmethod
    def from_payload(cls, payload: Payload, device: torch.device | str, trainable: bool = False,
                     coords: str = "logit_weights", step: float = 1.0) -> Navigator:
        """Copies of the payload's navigator on ``device``; leaf ``nn.Parameter``s if ``trainable``."""
        anchors = payload[ANCHORS].detach().to(device=device, dtype=torch.float32, copy=True)
        log_scale = payload[LOG_SCALE].detach().to(device=device, dtype=torch.float32, copy=True)
        position = to_coords(anchors, log_scale, coords, step)
        if trainable:
            return cls(nn.Parameter(position), nn.Parameter(log_scale), coords, step)
        return cls(position, log_scale, coords, step)

    @property
    def anchors(self) -> Tensor:
        """m_c, (C, d) float32 (differentiable in the trained coordinates)."""
        return anchors_from_coords(self.position, self.log_scale, self.coords, self.step)

    def parameters(self) -> list[Tensor]:
        """[position, log_scale], the trained tensors."""
        return [self.position, self.log_scale]

    def to_payload(self) -> Payload:
        """Detached float32 anchors and log-scale under ``gm.nav.*``."""
        return {ANCHORS: self.anchors.detach().clone(), LOG_SCALE: self.log_scale.detach().clone()}

    def precision(self) -> Tensor:
        """exp(s), () float32 (differentiable)."""
        return self.log_scale.exp()

    def logits(self, z: Tensor) -> Tensor:
        """(B, d) features -> (B, C) logits -1/2 exp(s) ||z - m_c||^2."""
        m = self.anchors
        sq = (z * z).sum(1, keepdim=True) - 2.0 * z @ m.T + (m * m).sum(1)[None, :]
        return -0.5 * self.precision() * sq.clamp_min(0.0)


def shared_objective(logits_fn: LogitsFn, z: Tensor, y: Tensor, z_virtual: Tensor, y_virtual: Tensor,
                     virtual_weight: float, weight: Tensor | None = None) -> Tensor:
    """L_shared (R3, spec §3) = CE(l(z), y) + virtual_weight * CE(l(z_virtual), y_virtual).

    The virtual features carry every class the generator knows, including those the client
    lacks, so the shared anchors are separated across clients.

    Args:
        logits_fn: (N, d) -> (N, C), the navigator's logits (or the linear head in the ablation).
        z: (B, d) real features; y: (B,) labels.
        z_virtual: (N, d) bank features (no gradient to the body); y_virtual: (N,).
        weight: (B,) per-sample weights of the real features (the batched path's padding has
            weight 0); None = the plain mean.
    """
    logits = logits_fn(z)
    loss = F.cross_entropy(logits, y) if weight is None else weighted_cross_entropy(logits, y, weight)
    if virtual_weight > 0 and y_virtual.numel():
        loss = loss + virtual_weight * F.cross_entropy(logits_fn(z_virtual), y_virtual)
    return loss


def local_objective(z: Tensor, y: Tensor, personal_means: Tensor, weight: Tensor | None = None) -> Tensor:
    """L_local (R4, spec §3) = 1/2 * mean_i ||z_i - mu_kc(i)||^2, in feature units squared.

    (A variant scaled by the navigator's precision exp(s), to make lambda_local unit-free,
    made the pull lr * lambda * exp(s) strong enough to kill every ReLU feature in one local
    epoch on the tiny test federation; the spec's literal form is kept.)

    Args:
        z: (B, d) features; y: (B,) labels.
        personal_means: (C, d) the client's personalized means (treated as constants).
        weight: (B,) per-sample weights (0 = padding); None = the plain mean.
    """
    target = personal_means.detach()[y]
    per_sample = (z - target).pow(2).sum(1)
    return 0.5 * (per_sample.mean() if weight is None else (per_sample * weight).sum() / weight.sum())


def initial_navigator(prior: GlobalPrior) -> tuple[Tensor, Tensor]:
    """Navigator after round 0 (our choice): anchors = the generator's class means mu_g (0 for
    unseen classes) and exp(s) = 1 / (mean distance between two class means).

    The gradient the Gaussian logits send to a feature is exp(s) (m_y - E_p[m]), of the order
    exp(s) * distance between anchors; this scale makes it O(1), like a freshly initialised
    linear head's. (The "statistical" choice exp(s) = d / tr(Sigma_g) gives gradients of order
    distance / variance, which blew training up under the small initial features.)
    Returns anchors (C, d), log-scale () float32.
    """
    means = prior.means[prior.available].to(STATS_DTYPE)
    log_scale = 0.0
    if means.shape[0] >= 2:
        dist = torch.cdist(means, means)
        mean_dist = float(dist.sum() / (means.shape[0] * (means.shape[0] - 1)))
        log_scale = -math.log(mean_dist) if mean_dist > 0 else 0.0
    return prior.means.to(torch.float32).clone(), torch.tensor(log_scale, dtype=torch.float32)
