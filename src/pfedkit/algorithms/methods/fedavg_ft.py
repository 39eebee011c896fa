"""FedAvg + fine-tuning: FedAvg, then a few local epochs on the client's training data before
evaluation (the simplest personalisation baseline; evaluation never updates the global model)."""

from __future__ import annotations

from dataclasses import dataclass

from pfedkit.algorithms.methods.fedavg import FedAvg
from pfedkit.algorithms.protocol import Predictor, RoundContext
from pfedkit.algorithms.registry import register_algorithm
from pfedkit.algorithms.toolkit.training import train_epochs
from pfedkit.core.config import param
from pfedkit.core.payload import Payload
from pfedkit.data.client_data import ClientData


@dataclass
class FedAvgFTHParams:
    ft_epochs: int = param(1, lo=1, hi=100, doc="local fine-tuning epochs before evaluation")
    ft_lr_scale: float = param(1.0, lo=0.0, hi=10.0, lo_open=True, doc="fine-tuning lr = scale * train.lr")


@register_algorithm
class FedAvgFT(FedAvg[FedAvgFTHParams]):
    """Shared: every parameter. Personal: a fine-tuned copy, rebuilt from the global model at
    every evaluation from the client's training split."""

    name = "fedavg_ft"
    shares = "the whole model"
    keeps = "a copy fine-tuned on the training split before each evaluation"
    paper = "FedAvg followed by local fine-tuning (e.g. Wang et al., arXiv 1910.10252)"

    def personal_predictor(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> Predictor:
        self.load(broadcast)
        train_epochs(self.model, data.x_train, data.y_train, self.train, ctx.generator,
                     epochs=self.hp.ft_epochs, lr=self.train.lr * self.hp.ft_lr_scale)
        self.model.eval()
        return self.model
