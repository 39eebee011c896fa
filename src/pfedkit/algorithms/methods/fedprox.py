"""FedProx (Li et al., MLSys 2020): FedAvg with a proximal term mu/2 ||w - w_global||^2."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from pfedkit.algorithms.methods.fedavg import FedAvg
from pfedkit.algorithms.registry import register_algorithm
from pfedkit.algorithms.toolkit.batched_training import ClientLoss, model_call, weighted_cross_entropy
from pfedkit.algorithms.toolkit.proximal import squared_distance
from pfedkit.algorithms.toolkit.training import LossFn
from pfedkit.core.config import param


@dataclass
class FedProxHParams:
    mu: float = param(0.01, lo=0.0, hi=100.0, doc="proximal coefficient")


@register_algorithm
class FedProx(FedAvg[FedProxHParams]):
    """Shared: every parameter. Personal: nothing. Local loss = CE + mu/2 ||w - w_global||^2."""

    name = "fedprox"
    shares = "the whole model"
    keeps = "nothing (evaluates the global model)"
    paper = "Li et al., Federated Optimization in Heterogeneous Networks, MLSys 2020"
    supports_privacy = False  # its loss holds the parameters themselves, which DP-SGD's per-example copies bypass

    @classmethod
    def equivalent_to(cls, model: torch.nn.Module, hp: FedProxHParams) -> str | None:
        """FedAvg when ``hp.mu`` is 0: the proximal term then adds exactly zero to every gradient."""
        return "fedavg (hp.fedprox.mu=0: no proximal term)" if hp.mu == 0 else None

    def local_loss(self) -> LossFn:
        """Cross-entropy plus the proximal term around the weights just loaded (the broadcast)."""
        anchors = [(p, p.detach().clone()) for p in self.model.parameters()]
        mu = self.hp.mu

        def loss_fn(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            prox = squared_distance(anchors)
            return F.cross_entropy(self.model(xb), yb) + 0.5 * mu * prox

        return loss_fn

    def client_loss(self) -> ClientLoss:
        """The batched path's loss: weighted cross-entropy plus the same proximal term."""
        model, mu = self.model, self.hp.mu
        names = [n for n, _ in model.named_parameters()]

        def loss(t: dict[str, Tensor], x: Tensor, y: Tensor, w: Tensor) -> Tensor:
            prox = squared_distance((t[n], t[f"anchor.{n}"]) for n in names)
            return weighted_cross_entropy(model_call(model, t, x), y, w) + 0.5 * mu * prox

        return loss
