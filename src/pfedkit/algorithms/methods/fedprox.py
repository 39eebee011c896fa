"""FedProx (Li et al., MLSys 2020): FedAvg with a proximal term mu/2 ||w - w_global||^2."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pfedkit.algorithms.protocol import Algorithm, ClientUpdate, RoundContext
from pfedkit.algorithms.registry import register_algorithm
from pfedkit.algorithms.toolkit.training import train_epochs
from pfedkit.core.config import param
from pfedkit.core.payload import Payload
from pfedkit.data.client_data import ClientData


@dataclass
class FedProxHParams:
    mu: float = param(0.01, lo=0.0, hi=100.0, doc="proximal coefficient")


@register_algorithm
class FedProx(Algorithm[FedProxHParams]):
    """Shared: every parameter. Personal: nothing. Local loss = CE + mu/2 ||w - w_global||^2."""

    name = "fedprox"
    shares = "the whole model"
    keeps = "nothing (evaluates the global model)"
    paper = "Li et al., Federated Optimization in Heterogeneous Networks, MLSys 2020"

    def local_update(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> ClientUpdate:
        self.load(broadcast)
        anchors = [(p, p.detach().clone()) for p in self.model.parameters()]
        mu = self.hp.mu

        def loss_fn(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            prox = sum(((p - a) ** 2).sum() for p, a in anchors)
            return F.cross_entropy(self.model(xb), yb) + 0.5 * mu * prox

        loss = train_epochs(self.model, data.x_train, data.y_train, self.train, ctx.generator, loss_fn=loss_fn)
        return ClientUpdate(upload=self.snapshot(), weight=data.num_train, state=state, metrics={"train_loss": loss})
