"""Ditto: FedAvg for the global model plus, on each client, a personal model regularised towards
the current global model by lambda/2 ||v - w_global||^2."""

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
class DittoHParams:
    lam: float = param(0.1, lo=0.0, hi=1000.0, doc="lambda: strength of the pull of v towards the global model")
    personal_epochs: int = param(0, lo=0, hi=1000, doc="epochs on the personal model; 0 = train.local_epochs")


@register_algorithm
class Ditto(Algorithm[DittoHParams]):
    """Ditto (Li, Hu, Beirami, Smith, "Ditto: Fair and Robust Federated Learning Through
    Personalization", ICML 2021).

    Shared: the whole global model w, trained each round exactly as in FedAvg (cross-entropy,
    ``train.local_epochs`` epochs, starting from the broadcast w^t) and averaged.
    Personal: a whole personal model v (every state_dict tensor), trained each round from its
    previous value by ``personal_epochs`` epochs on CE(v) + lam/2 ||v - w^t||^2, where w^t is
    the global model received this round (the regulariser covers parameters, not buffers).
    A client that has not trained yet has v = w^t (its state is empty until then), so its
    personal predictor (the base class's: broadcast, then the state on top) is the global model.
    The paper tunes lambda per dataset; the default 0.1 lies in its search range (tune it with
    the learning-rate search budget). ``personal_epochs`` 0 means as many as ``train.local_epochs``.
    """

    name = "ditto"
    shares = "the whole global model"
    keeps = "a whole personal model pulled to the global one by lambda"
    paper = "Li, Hu, Beirami, Smith, Ditto: Fair and Robust Federated Learning Through Personalization, ICML 2021"

    def local_update(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> ClientUpdate:
        # Personal model first: v <- v - lr * grad(CE(v) + lam/2 ||v - w^t||^2).
        self.load(broadcast)
        anchors = [p.detach().clone() for p in self.model.parameters()]
        self.load(state)  # no-op on the first participation: v starts at w^t
        params = list(self.model.parameters())
        lam = self.hp.lam

        def personal_loss(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            prox = sum(((p - a) ** 2).sum() for p, a in zip(params, anchors))
            return F.cross_entropy(self.model(xb), yb) + 0.5 * lam * prox

        epochs = self.hp.personal_epochs or self.train.local_epochs
        p_loss = train_epochs(self.model, data.x_train, data.y_train, self.train, ctx.generator,
                              loss_fn=personal_loss, epochs=epochs)
        personal = self.snapshot()
        # Global model: plain local training from w^t, as in FedAvg.
        self.load(broadcast)
        g_loss = train_epochs(self.model, data.x_train, data.y_train, self.train, ctx.generator)
        return ClientUpdate(upload=self.snapshot(), weight=data.num_train, state=personal,
                            metrics={"train_loss": g_loss, "personal_loss": p_loss})
