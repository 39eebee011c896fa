"""pFedBayesPT's prompt generator: a semi-implicit posterior over per-instance prompts.

Spec §2, §5, §7. The paper's words (abstract): instance-wise prompt generation "from a
Bayesian perspective", with the prompt posterior "modelled as an implicit distribution".
Our reading (spec §2):

    e = e(x)                                  (B, F) cached prompt-free [CLS] feature
    psi = T_phi(e, eps),  eps ~ N(0, I_m)     implicit mixing layer, (B, L, D)
    sigma = softplus(S_phi(e)) + sigma_min    explicit Gaussian layer, (B, L, D)
    p = psi + sigma * xi,  xi ~ N(0, I)       reparameterised prompt sample, (B, L, D)
    p_0(p) = N(p; mu_0, s_0^2 I)              prior; mu_0 (L, D) is the learnable global prompt

Our design choices, each documented where it lives: T_phi's first layer is split into a
feature part (computed once per image) and a noise part (computed per draw), so K+1
draws cost one (K+1)*B-row pass of the small layers; both output layers are low rank
(hidden -> r -> L*D) and start at zero, so initially psi = mu_0 (with `residual`) and
sigma = sigma_init. The modules hold only trainable generator parts, never the backbone.
Randomness comes from an explicit torch.Generator argument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pfedkit.stats.sivi import diag_gaussian_log_prob, sivi_kl_term


def _randn(shape: tuple[int, ...], generator: torch.Generator, like: Tensor) -> Tensor:
    """Standard normal draws of `shape` from `generator` (on the generator's device),
    returned with `like`'s dtype and device."""
    out = torch.randn(shape, generator=generator, device=generator.device, dtype=like.dtype)
    return out.to(like.device)


def _low_rank_linear(in_dim: int, rank: int | None, out_dim: int) -> nn.Sequential:
    """in_dim -> rank (no bias) -> out_dim, or a full in_dim -> out_dim layer if rank is None.
    The last layer's weight and bias start at zero (the output starts at zero)."""
    if rank is None:
        layers = [nn.Linear(in_dim, out_dim)]
    else:
        layers = [nn.Linear(in_dim, rank, bias=False), nn.Linear(rank, out_dim)]
    nn.init.zeros_(layers[-1].weight)
    nn.init.zeros_(layers[-1].bias)
    return nn.Sequential(*layers)


class ImplicitMixingNetwork(nn.Module):
    """T_phi: psi = up(down(gelu(W_e e + W_eps eps + b))), reshaped to (L, D).

    The low-rank output (hidden -> rank -> L*D) keeps the generator small: every psi lies
    in the rank-r affine subspace {bias + U v} of R^{L*D}. The output layer starts at zero.
    With `noise_dim = 0` the network is a deterministic MLP of e (no noise input).

    Args:
        feat_dim: F, size of e(x).
        noise_dim: m, size of the injected noise eps (0 = none).
        hidden: width of the hidden layer.
        rank: r, bottleneck of the output layer.
        num_prompts: L, prompt tokens per image.
        prompt_dim: D, token width.
    """

    def __init__(
        self, feat_dim: int, noise_dim: int, hidden: int, rank: int, num_prompts: int, prompt_dim: int
    ) -> None:
        super().__init__()
        if min(feat_dim, hidden, rank, num_prompts, prompt_dim) < 1 or noise_dim < 0:
            raise ValueError("ImplicitMixingNetwork: sizes must be >= 1 (noise_dim >= 0)")
        self.noise_dim = noise_dim
        self.num_prompts = num_prompts
        self.prompt_dim = prompt_dim
        self.feature_in = nn.Linear(feat_dim, hidden)
        self.noise_in = nn.Linear(noise_dim, hidden, bias=False) if noise_dim > 0 else None
        self.out = _low_rank_linear(hidden, rank, num_prompts * prompt_dim)

    def forward(self, e: Tensor, eps: Tensor | None = None) -> Tensor:
        """psi for features e and noise eps.

        Args:
            e: (B, F) features.
            eps: (N, B, m) noise for N draws per image, or None for eps = 0.
        Returns:
            (N, B, L, D) if eps is given, else (B, L, D).
        """
        h = self.feature_in(e)  # (B, hidden), shared by all draws
        if eps is not None and self.noise_in is not None:
            h = h.unsqueeze(0) + self.noise_in(eps)  # (N, B, hidden)
        elif eps is not None:
            h = h.unsqueeze(0).expand(eps.shape[0], *h.shape)
        return self.out(F.gelu(h)).unflatten(-1, (self.num_prompts, self.prompt_dim))

    def sample(self, e: Tensor, num_draws: int, generator: torch.Generator) -> Tensor:
        """num_draws independent psi per image: e (B, F) -> (num_draws, B, L, D).

        All draws go through the network as one (num_draws * B)-row batch. Without noise
        (noise_dim = 0) the draws are identical and no random numbers are consumed.
        """
        if self.noise_in is None:
            return self(e).unsqueeze(0).expand(num_draws, -1, -1, -1)
        return self(e, _randn((num_draws, e.shape[0], self.noise_dim), generator, e))


class ExplicitGaussianLayer(nn.Module):
    """S_phi: sigma(x) = softplus(S_phi(e(x))) + sigma_min, and q(p | psi, x) = N(psi, diag(sigma^2)).

    S_phi is linear (low rank if `rank` is given); its output weight starts at zero and
    its bias so that sigma = sigma_init everywhere at initialisation.

    Args:
        feat_dim: F, size of e(x).
        num_prompts: L.
        prompt_dim: D.
        sigma_min: floor on sigma (> 0), keeps log q finite.
        rank: optional bottleneck r of S_phi (None = full F -> L*D layer).
        sigma_init: initial sigma (> sigma_min).
    """

    def __init__(
        self, feat_dim: int, num_prompts: int, prompt_dim: int, sigma_min: float = 1e-3,
        rank: int | None = None, sigma_init: float = 0.1,
    ) -> None:
        super().__init__()
        if not 0 < sigma_min < sigma_init:
            raise ValueError(f"ExplicitGaussianLayer: need 0 < sigma_min < sigma_init, got {sigma_min}, {sigma_init}")
        self.num_prompts = num_prompts
        self.prompt_dim = prompt_dim
        self.sigma_min = sigma_min
        self.scale = _low_rank_linear(feat_dim, rank, num_prompts * prompt_dim)
        excess = sigma_init - sigma_min
        nn.init.constant_(self.scale[-1].bias, excess + math.log(-math.expm1(-excess)))  # softplus^-1

    def forward(self, e: Tensor) -> Tensor:
        """sigma: e (B, F) -> (B, L, D), every entry >= sigma_min."""
        raw = self.scale(e).unflatten(-1, (self.num_prompts, self.prompt_dim))
        return F.softplus(raw) + self.sigma_min

    @staticmethod
    def log_prob(p: Tensor, psi: Tensor, sigma: Tensor) -> Tensor:
        """log q(p | psi, x): p, psi, sigma (..., L, D), broadcast -> (...)."""
        return diag_gaussian_log_prob(p.flatten(-2), psi.flatten(-2), sigma.flatten(-2))


@dataclass(frozen=True)
class PromptSample:
    """One reparameterised prompt draw per image, with what the SIVI bound needs.

    Attributes:
        prompt: p, (B, L, D).
        psi_all: (K+1, B, L, D) mixing draws, psi_all[0] generated p; (1, B, L, D) when the
            mixing layer has no noise (the K+1 draws would all be equal).
        sigma: (B, L, D) explicit-layer std (zeros for the deterministic generator).
    """

    prompt: Tensor
    psi_all: Tensor
    sigma: Tensor


class SemiImplicitPromptPosterior(nn.Module):
    """The prompt generator h_phi(p | x) with its prior p_0 = N(mu_0, s_0^2 I).

    Variants (spec §7 ablations):
      - `implicit=True, stochastic=True`: semi-implicit posterior (the method).
      - `implicit=False`: explicit-only Gaussian amortised VI; psi is a deterministic MLP
        of e(x), no mixing noise, the mixture term is a single Gaussian.
      - `stochastic=False`: deterministic instance generator p = psi(e(x)); no noise, no
        xi, no explicit layer, `kl_term` is 0 (`implicit` is then irrelevant).

    With `residual=True` (our default) psi = mu_0 + T_phi(e, eps): the global prompt is
    the centre the instance prompts start from (T_phi's output starts at zero), and the
    KL term, which only sees p - mu_0 and p - psi_k, penalises the instance deviations;
    mu_0 then learns through the likelihood. With `residual=False` psi = T_phi(e, eps)
    as written in spec §2, and mu_0 learns through log p_0.

    Args:
        feat_dim: F, size of e(x).
        num_prompts: L.
        prompt_dim: D.
        noise_dim: m, size of eps.
        hidden: T_phi hidden width.
        rank: r, output bottleneck of T_phi and S_phi.
        prior_std: s_0 (fixed hyper-parameter, > 0).
        sigma_min, sigma_init: explicit-layer floor and initial std.
        implicit, stochastic, residual: variant flags (above).
        prompt_init_std: std of mu_0's normal initialisation (VPT-like small prompts).
    """

    def __init__(
        self, feat_dim: int, num_prompts: int, prompt_dim: int, *, noise_dim: int = 16, hidden: int = 256,
        rank: int = 32, prior_std: float = 1.0, sigma_min: float = 1e-3, sigma_init: float = 0.1,
        implicit: bool = True, stochastic: bool = True, residual: bool = True, prompt_init_std: float = 0.02,
    ) -> None:
        super().__init__()
        if prior_std <= 0:
            raise ValueError(f"SemiImplicitPromptPosterior: prior_std must be > 0, got {prior_std}")
        self.implicit = implicit
        self.stochastic = stochastic
        self.residual = residual
        self.prior_std = float(prior_std)
        use_noise = implicit and stochastic
        self.mixing = ImplicitMixingNetwork(
            feat_dim, noise_dim if use_noise else 0, hidden, rank, num_prompts, prompt_dim
        )
        self.explicit = (
            ExplicitGaussianLayer(feat_dim, num_prompts, prompt_dim, sigma_min, rank, sigma_init)
            if stochastic else None
        )
        self.prior_mean = nn.Parameter(torch.randn(num_prompts, prompt_dim) * prompt_init_std)

    def _psi(self, psi: Tensor) -> Tensor:
        return psi + self.prior_mean if self.residual else psi

    def mean_prompt(self, e: Tensor) -> Tensor:
        """The mean prompt psi(e, eps = 0) with xi = 0: e (B, F) -> (B, L, D)."""
        return self._psi(self.mixing(e))

    def sample(self, e: Tensor, K: int, generator: torch.Generator) -> PromptSample:
        """One prompt per image plus K extra mixing draws for the SIVI mixture.

        Args:
            e: (B, F) features.
            K: extra mixing draws (>= 0).
            generator: source of eps (K+1, B, m) and xi (B, L, D).
        Returns:
            PromptSample; everything is reparameterised (differentiable in phi and mu_0).
        """
        if K < 0:
            raise ValueError(f"sample: K must be >= 0, got {K}")
        if self.explicit is None:
            psi = self.mean_prompt(e)
            return PromptSample(psi, psi.unsqueeze(0), torch.zeros_like(psi))
        draws = K + 1 if self.mixing.noise_in is not None else 1
        psi_all = self._psi(self.mixing.sample(e, draws, generator))
        sigma = self.explicit(e)
        prompt = psi_all[0] + sigma * _randn(tuple(sigma.shape), generator, sigma)
        return PromptSample(prompt, psi_all, sigma)

    def kl_term(self, sample: PromptSample) -> Tensor:
        """log p_0(p) - log( 1/(K+1) sum_k q(p | psi_k) ), (B,); zeros if deterministic.

        The loss is -(log_lik + beta * kl_term) (spec §3, `pfedkit.stats.sivi`).
        """
        p = sample.prompt
        if self.explicit is None:
            return p.new_zeros(p.shape[0])
        return sivi_kl_term(
            p.flatten(1), sample.psi_all.flatten(2), sample.sigma.flatten(1), self.prior_mean.flatten(), self.prior_std
        )

    def predictive_samples(self, e: Tensor, S: int, generator: torch.Generator) -> Tensor:
        """S independent prompt draws per image for the Bayesian predictive (spec §5).

        Args:
            e: (B, F) features.
            S: number of samples (>= 1).
            generator: source of eps and xi.
        Returns:
            (S, B, L, D) prompts; for the deterministic generator S copies of the mean prompt.
        """
        if S < 1:
            raise ValueError(f"predictive_samples: S must be >= 1, got {S}")
        if self.explicit is None:
            return self.mean_prompt(e).unsqueeze(0).expand(S, -1, -1, -1)
        psi = self._psi(self.mixing.sample(e, S, generator))  # (S, B, L, D)
        sigma = self.explicit(e)
        return psi + sigma * _randn(tuple(psi.shape), generator, sigma)


def bayes_predictive(log_probs_per_sample: Tensor) -> Tensor:
    """log of the Bayesian predictive average (1/S) sum_s softmax(logits_s).

    Args:
        log_probs_per_sample: (S, B, C) logits or log-probabilities for S prompt samples
            (they are log-softmax-normalised first, so either works).
    Returns:
        (B, C) log predictive probabilities, logsumexp_s(log p_s) - log S.
    """
    log_p = torch.log_softmax(log_probs_per_sample, dim=-1)
    return torch.logsumexp(log_p, dim=0) - math.log(log_p.shape[0])
