"""FedProx (Li et al., MLSys 2020): FedAvg with a proximal term mu/2 ||w - w_global||^2."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pfedkit.algorithms.methods.fedavg import FedAvg
from pfedkit.algorithms.registry import register_algorithm
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

    def local_loss(self) -> LossFn:
        """Cross-entropy plus the proximal term around the weights just loaded (the broadcast)."""
        anchors = [(p, p.detach().clone()) for p in self.model.parameters()]
        mu = self.hp.mu

        def loss_fn(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            prox = sum(((p - a) ** 2).sum() for p, a in anchors)
            return F.cross_entropy(self.model(xb), yb) + 0.5 * mu * prox

        return loss_fn
