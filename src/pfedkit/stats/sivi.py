"""Semi-implicit variational inference (SIVI) for pFedBayesPT's prompt posterior.

Spec §2-§3. The paper's words (abstract): the prompt posterior is "an implicit
distribution" and the objective is "derived under semi-implicit variational inference".
Our reading, following Yin & Zhou (ICML 2018): with a mixing layer psi ~ q_phi(psi | x)
and an explicit layer q(p | psi, x) = N(p; psi, diag(sigma^2)), the per-instance
surrogate bound is

    L_K = log p(y | x, p) + beta * ( log p_0(p) - log( 1/(K+1) sum_{k=0..K} q(p | psi_k, x) ) )

where psi_0 generated p and psi_1..psi_K are extra draws. Its expectation is a lower
bound on the ELBO (hence on log p(y | x) when beta = 1) that tightens as K grows.
The beta schedule (`kl_weight`) is our design.

Prompts enter these functions flattened: P = L * D is the prompt dimension. All
functions are pure, differentiable, and broadcast over leading dimensions.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

LOG_2PI = math.log(2.0 * math.pi)


def diag_gaussian_log_prob(x: Tensor, mean: Tensor, std: Tensor | float) -> Tensor:
    """log N(x; mean, diag(std^2)), summed over the last dimension.

    Args:
        x: (..., P) points.
        mean: (..., P) means; broadcast against `x`.
        std: (..., P) standard deviations (> 0), or a float; broadcast against `x`.
    Returns:
        (...) log densities: the broadcast shape of the inputs without its last dimension.
    """
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device)
    z = (x - mean) / std_t
    return (-0.5 * z.square() - torch.log(std_t) - 0.5 * LOG_2PI).sum(-1)


def sivi_log_mixture(p: Tensor, psi_all: Tensor, std: Tensor) -> Tensor:
    """log( 1/(K+1) sum_{k=0..K} N(p; psi_k, diag(std^2)) ), the SIVI mixture density.

    Computed with log-sum-exp over k, so it stays finite in float32 even when every
    component density underflows (large P, small std). The normalising terms shared by
    all components (log std, log 2 pi) are added once, outside the log-sum-exp.

    Args:
        p: (B, P) prompt samples.
        psi_all: (K+1, B, P) component means; psi_all[0] is the one that generated p.
        std: (B, P) explicit-layer standard deviations, shared by all K+1 components.
    Returns:
        (B,) log mixture density of each p.
    """
    if psi_all.ndim != p.ndim + 1:
        raise ValueError(f"sivi_log_mixture: psi_all must be (K+1, B, P) for p (B, P), got {tuple(psi_all.shape)}")
    quad = ((p.unsqueeze(0) - psi_all) / std).square().sum(-1)  # (K+1, B)
    log_norm = torch.log(std).sum(-1) + 0.5 * p.shape[-1] * LOG_2PI  # (B,)
    num = psi_all.shape[0]
    return torch.logsumexp(-0.5 * quad, dim=0) - math.log(num) - log_norm


def sivi_kl_term(
    p: Tensor, psi_all: Tensor, std: Tensor, prior_mean: Tensor, prior_std: Tensor | float
) -> Tensor:
    """log p_0(p) - log mixture_K(p): the single-sample term that beta multiplies in L_K.

    Its expectation is minus an upper bound on KL(h || p_0), so it is <= 0 on average and
    the loss is -(log_lik + beta * term).

    Args:
        p: (B, P) prompt samples.
        psi_all: (K+1, B, P) mixing-layer draws, psi_all[0] generated p.
        std: (B, P) explicit-layer standard deviations.
        prior_mean: prior mean mu_0, broadcastable to (B, P) (e.g. (P,)).
        prior_std: prior standard deviation s_0, a float or broadcastable to (B, P).
    Returns:
        (B,) per-instance term.
    """
    return diag_gaussian_log_prob(p, prior_mean, prior_std) - sivi_log_mixture(p, psi_all, std)


def sivi_surrogate_bound(
    log_lik: Tensor,
    p: Tensor,
    psi_all: Tensor,
    std: Tensor,
    prior_mean: Tensor,
    prior_std: Tensor | float,
    beta: float,
) -> Tensor:
    """Per-instance SIVI surrogate bound L_K = log_lik + beta * (log p_0(p) - log mixture_K(p)).

    Spec §3. Minimise the batch mean of -L_K.

    Args:
        log_lik: (B,) log p(y | x, p) of each instance under its sampled prompt.
        p: (B, P) prompt samples, p = psi_0 + std * xi.
        psi_all: (K+1, B, P) mixing-layer draws, psi_all[0] generated p.
        std: (B, P) explicit-layer standard deviations.
        prior_mean: mu_0, broadcastable to (B, P).
        prior_std: s_0, a float or broadcastable to (B, P).
        beta: KL weight (see `kl_weight`); 1 gives the plain SIVI bound.
    Returns:
        (B,) bound per instance.
    """
    return log_lik + beta * sivi_kl_term(p, psi_all, std, prior_mean, prior_std)


def kl_weight(round: int, warmup_rounds: int, base: float, prompt_numel: int) -> float:
    """KL weight beta for a round: beta = base * min(1, round / warmup_rounds) / prompt_numel.

    Spec §3 (the schedule is our design): linear warm-up from 0 at round 0 to `base` at
    round `warmup_rounds` and after, divided by the prompt dimension L * D so that the KL
    term is a per-dimension average, on the scale of the per-instance log likelihood.
    `warmup_rounds = 0` means no warm-up (full weight from round 0).

    Args:
        round: 0-based federated round index (>= 0).
        warmup_rounds: number of warm-up rounds (>= 0).
        base: weight after warm-up (>= 0), the flag `bpt.kl_weight`.
        prompt_numel: L * D (> 0).
    Returns:
        beta, a float >= 0.
    """
    if round < 0 or warmup_rounds < 0 or base < 0 or prompt_numel <= 0:
        raise ValueError(
            f"kl_weight: need round >= 0, warmup_rounds >= 0, base >= 0, prompt_numel > 0; "
            f"got {round}, {warmup_rounds}, {base}, {prompt_numel}"
        )
    ramp = 1.0 if warmup_rounds == 0 else min(1.0, round / warmup_rounds)
    return base * ramp / prompt_numel
