"""Ditto: FedAvg for the global model plus, on each client, a personal model regularised towards
the current global model by lambda/2 ||v - w_global||^2."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from pfedkit.algorithms.protocol import Algorithm, ClientUpdate, RoundContext
from pfedkit.algorithms.registry import register_algorithm
from pfedkit.algorithms.toolkit.batched_training import (
    ClientRows,
    cross_entropy_loss,
    model_call,
    parameter_names,
    stack_payloads,
    train_together,
    unstack,
    weighted_cross_entropy,
)
from pfedkit.algorithms.toolkit.proximal import squared_distance
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
    batched = True
    paper = "Li, Hu, Beirami, Smith, Ditto: Fair and Robust Federated Learning Through Personalization, ICML 2021"

    def local_update(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> ClientUpdate:
        # Personal model first: v <- v - lr * grad(CE(v) + lam/2 ||v - w^t||^2).
        self.load(broadcast)
        anchors = [p.detach().clone() for p in self.model.parameters()]
        self.load(state)  # no-op on the first participation: v starts at w^t
        params = list(self.model.parameters())
        lam = self.hp.lam

        def personal_loss(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            prox = squared_distance(zip(params, anchors))
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

    def local_updates(self, broadcasts: list[Payload], states: list[Payload], datas: list[ClientData],
                      ctxs: list[RoundContext]) -> list[ClientUpdate]:
        """Both models of several clients at once: the personal phase (proximal loss around each
        client's received w^t) for all of them, then the global phase, drawing from each client's
        generator in the serial order."""
        device, generators, rows = ctxs[0].device, [c.generator for c in ctxs], ClientRows.of_clients(datas)
        names = parameter_names(self.model)
        model, lam = self.model, self.hp.lam

        def personal_loss(t: dict[str, Tensor], x: Tensor, y: Tensor, w: Tensor) -> Tensor:
            prox = squared_distance((t[n], t[f"anchor.{n}"]) for n in names)
            return weighted_cross_entropy(model_call(model, t, x), y, w) + 0.5 * lam * prox

        starts = [{**b, **s} for b, s in zip(broadcasts, states)]  # v starts at w^t on the first participation
        global_start = stack_payloads(broadcasts, names, device)
        anchors = {f"anchor.{n}": t for n, t in global_start.items()}
        epochs = self.hp.personal_epochs or self.train.local_epochs
        personal, p_losses = train_together(personal_loss, stack_payloads(starts, names, device), rows, generators,
                                            self.train, per_client=anchors, epochs=epochs)
        trained, g_losses = train_together(cross_entropy_loss(model), global_start, rows, generators, self.train)
        return [ClientUpdate(upload={**b, **g}, weight=d.num_train, state={**start, **v},
                             metrics={"train_loss": float(gl), "personal_loss": float(pl)})
                for b, start, g, v, d, gl, pl in zip(broadcasts, starts, unstack(trained, len(ctxs)),
                                                     unstack(personal, len(ctxs)), datas, g_losses, p_losses)]
