"""GPFL (Zhang, Hua, Wang, Song, Xue, Ma, Cao, Guan, "GPFL: Simultaneously Learning Global and
Personalized Feature Information for Personalized Federated Learning", ICCV 2023).

After the shared feature extractor phi, a Conditional Valve (CoV) turns one feature f into two:
a global feature ``f_G = CoV(f, g)`` and a personalized feature ``f_P = CoV(f, p_i)``. The
conditional inputs come from the Global Category Embedding layer (GCE, one d-vector per class):
``g`` is the mean embedding over classes and ``p_i`` the embedding averaged with client i's
label frequencies. ``f_G`` is trained towards the class embeddings (an angle-level softmax loss
plus an L2 pull to the frozen received embeddings), ``f_P`` feeds the personal head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pfedkit.algorithms.protocol import Algorithm, ClientUpdate, Predictor, RoundContext
from pfedkit.algorithms.registry import register_algorithm
from pfedkit.algorithms.toolkit.training import train_epochs
from pfedkit.core.config import param
from pfedkit.core.payload import Payload, clone_payload, weighted_average
from pfedkit.core.seeding import built_with_seed, derive_seed
from pfedkit.data.client_data import ClientData
from pfedkit.models.split import SplitModel

PREFIX = "gpfl."
"""Payload keys of the GCE and CoV start with this (``gpfl.gce.weight``, ``gpfl.cov.gamma.0.weight``...)."""


@dataclass
class GPFLHParams:
    lam: float = param(0.01, lo=0.0, hi=1e4, doc="weight of ||f_G - GCE(y)|| (the paper's lambda)")
    mu: float = param(0.1, lo=0.0, hi=1e4, doc="L2 regularisation (weight decay) of the GCE and CoV (the paper's mu)")


class ConditionalValve(nn.Module):
    """CoV: ``relu(f * (1 + gamma(c)) + beta(c))`` with gamma, beta = Linear -> ReLU -> LayerNorm.

    Args:
        dim: feature size d.
    Forward:
        f (B, d) features, c (d,) conditional input -> (B, d).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.LayerNorm(dim))
        self.beta = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.LayerNorm(dim))

    def forward(self, f: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return F.relu(f * (self.gamma(c) + 1.0) + self.beta(c))


def conditional_inputs(embeddings: torch.Tensor, class_counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """GPFL's conditional inputs from the GCE table.

    Args:
        embeddings: (C, d) category embeddings. class_counts: (C,) the client's training labels.
    Returns:
        g (d,) = mean over classes, and p (d,) = sum_c (n_c / n) e_c; both detached.
    """
    e = embeddings.detach()
    freq = class_counts.to(e) / class_counts.sum().clamp_min(1).to(e)
    return e.mean(0), freq @ e


def angle_softmax_loss(f: torch.Tensor, y: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
    """GCE's angle-level loss: cross-entropy of the cosine similarities (B, C) between f (B, d) and
    the category embeddings (C, d), unscaled as in the authors' code."""
    return F.cross_entropy(F.normalize(f, dim=1) @ F.normalize(embeddings, dim=1).T, y)


@register_algorithm
class GPFL(Algorithm[GPFLHParams]):
    """GPFL.

    Shared (uploaded, sample-weighted averaged): the body (``body.*``), the GCE table
    ``gpfl.gce.weight`` (C, d) and the CoV (``gpfl.cov.*``). Personal: the head (``head.*``),
    which always reads the personalized feature ``f_P``. The conditional inputs g and p_i are
    recomputed from the received GCE, so they need no state.

    Local loss per batch (authors' code): ``CE(head(f_P), y) + angle_softmax(f_G, y; GCE)
    + lam * ||f_G - E0[y]||_F`` (E0: the received GCE, frozen; the norm is over the whole batch,
    not squared) ``+ mu/2 (||GCE||^2 + ||CoV||^2)`` (the code's weight decay mu, written as a
    loss term so one optimiser serves every parameter). Personal prediction:
    ``head(CoV(phi(x), p_i))``.

    Deviation: the code derives g and p_i from the client's previous local GCE before
    overwriting it with the global one; here they come from the received global GCE, which keeps
    the client stateless apart from its head. The GCE/CoV initialisation is drawn from a
    generator seeded by the run seed (global RNG untouched).
    """

    name = "gpfl"
    key_prefix = "gpfl."
    paper = ("Zhang et al., GPFL: Simultaneously Learning Global and Personalized Feature Information for "
             "Personalized Federated Learning, ICCV 2023")
    shares = "body, GCE category embeddings, CoV"
    keeps = "head (reads the personalized feature)"

    def setup(self) -> None:
        d = self.model.feature_dim
        self.extra = built_with_seed(derive_seed(self.seed, 0x6F71), lambda: nn.ModuleDict(
            {"gce": nn.Embedding(self.num_classes, d), "cov": ConditionalValve(d)}))
        self._extra_refs = {PREFIX + k: v for k, v in self.extra.state_dict(keep_vars=False).items()}
        self.head_keys = self.keys("head")
        self.body_keys = self.keys("body")
        self.shared_keys = self.body_keys + list(self._extra_refs)
        self._initial_head = self.snapshot(self.head_keys)

    # ----- payload helpers for the extra modules -------------------------------------------
    def _load_extra(self, payload: Payload) -> None:
        with torch.no_grad():
            for key, ref in self._extra_refs.items():
                if key in payload:
                    ref.copy_(payload[key])

    def _snapshot_shared(self) -> Payload:
        out = self.snapshot(self.body_keys)
        out.update({k: v.detach().clone() for k, v in self._extra_refs.items()})
        return out

    def _prepare(self, broadcast: Payload, state: Payload, ctx: RoundContext) -> None:
        self.extra.to(ctx.device)
        self._extra_refs = {PREFIX + k: v for k, v in self.extra.state_dict(keep_vars=False).items()}
        self.load(broadcast)
        self._load_extra(broadcast)
        self.load(state)

    # ----- protocol ------------------------------------------------------------------------
    def init_server(self) -> Payload:
        return self._snapshot_shared()

    def init_client(self, data: ClientData) -> Payload:
        return clone_payload(self._initial_head)

    def aggregate(self, server: Payload, updates: list[ClientUpdate], round: int) -> Payload:
        if not updates:
            return server
        return {**server, **weighted_average([u.upload for u in updates], [u.weight for u in updates])}

    def local_update(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> ClientUpdate:
        self._prepare(broadcast, state, ctx)
        model, gce, cov = self.model, self.extra["gce"], self.extra["cov"]
        frozen = gce.weight.detach().clone()
        g, p = conditional_inputs(frozen, data.class_counts("train"))
        lam, mu = self.hp.lam, self.hp.mu
        extra_params = list(self.extra.parameters())

        def loss_fn(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            f = model.features(xb)
            f_p, f_g = cov(f, p), cov(f, g)
            loss = F.cross_entropy(model.head(f_p), yb) + angle_softmax_loss(f_g, yb, gce.weight)
            if lam > 0:
                loss = loss + lam * torch.linalg.vector_norm(f_g - frozen[yb])
            if mu > 0:
                loss = loss + 0.5 * mu * sum((q * q).sum() for q in extra_params)
            return loss

        self.extra.train()
        loss = train_epochs(model, data.x_train, data.y_train, self.train, ctx.generator,
                            params=list(model.parameters()) + extra_params, loss_fn=loss_fn)
        return ClientUpdate(upload=self._snapshot_shared(), weight=data.num_train,
                            state=self.snapshot(self.head_keys), metrics={"train_loss": loss})

    def personal_predictor(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> Predictor:
        self._prepare(broadcast, state, ctx)
        self.model.eval()
        self.extra.eval()
        _, p = conditional_inputs(self.extra["gce"].weight, data.class_counts("train"))
        return personalized_predictor(self.model, self.extra["cov"], p)


def personalized_predictor(model: SplitModel, cov: ConditionalValve, p: torch.Tensor) -> Predictor:
    """(B, C, H, W) -> (B, num_classes): ``head(CoV(body(x), p))``."""
    p = p.detach().clone()

    def predict(x: torch.Tensor) -> torch.Tensor:
        return model.head(cov(model.features(x), p.to(x.device)))

    return predict

