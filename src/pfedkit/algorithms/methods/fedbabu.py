"""FedBABU: only the body is trained and averaged; the head stays at its random initialisation
during federation and is fine-tuned locally, from the training split, before evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pfedkit.algorithms.protocol import Algorithm, ClientUpdate, Predictor, RoundContext
from pfedkit.algorithms.registry import register_algorithm
from pfedkit.algorithms.toolkit.batched_training import (
    constants_of,
    cross_entropy_loss,
    parameter_names,
    train_round_together,
    unstack,
)
from pfedkit.algorithms.toolkit.partial_sharing import parameters_named
from pfedkit.algorithms.toolkit.training import train_epochs
from pfedkit.core.config import param
from pfedkit.core.payload import Payload
from pfedkit.data.client_data import ClientData


@dataclass
class FedBABUHParams:
    ft_epochs: int = param(5, lo=0, hi=1000, doc="local fine-tuning epochs before evaluation")
    ft_part: str = param("all", choices=("all", "head"), doc="what fine-tuning updates: the whole model or the head")
    ft_lr_scale: float = param(1.0, lo=0.0, hi=10.0, lo_open=True, doc="fine-tuning lr = scale * train.lr")


@register_algorithm
class FedBABU(Algorithm[FedBABUHParams]):
    """FedBABU (Oh, Kim, Yun, "FedBABU: Toward Enhanced Representation for Federated Image
    Classification", ICLR 2022).

    Shared: the body, trained locally with the head frozen, uploaded and sample-weighted averaged.
    The head is part of the server state and of the broadcast but is never trained nor uploaded
    during federation: it keeps the seeded random initialisation (identical on every client).
    Personal: nothing persistent. The personal model is rebuilt at every evaluation from the
    broadcast by ``ft_epochs`` epochs of fine-tuning on the client's training split
    (``ft_part="all"``: the whole model, as in the paper's main results, 5 epochs by default;
    ``"head"``: the head only). Fine-tuning happens in the workspace model only, so no
    persistent state changes; it starts from the broadcast at every evaluation.
    """

    name = "fedbabu"
    shares = "body (head frozen at its random init)"
    keeps = "a copy fine-tuned before each evaluation"
    paper = "Oh, Kim, Yun, FedBABU: Toward Enhanced Representation for Federated Image Classification, ICLR 2022"
    batched = True

    def local_update(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> ClientUpdate:
        self.load(broadcast)
        body = parameters_named(self.model, self.keys("body"))
        loss = train_epochs(self.model, data.x_train, data.y_train, self.train, ctx.generator, params=body)
        return ClientUpdate(upload=self.snapshot(self.keys("body")), weight=data.num_train, state=state,
                            metrics={"train_loss": loss})

    def local_updates(self, broadcasts: list[Payload], states: list[Payload], datas: list[ClientData],
                      ctxs: list[RoundContext]) -> list[ClientUpdate]:
        device = ctxs[0].device
        body = parameter_names(self.model, self.keys("body"))
        per_client, shared = constants_of(broadcasts, parameter_names(self.model, self.keys("head")), device)
        trained, losses = train_round_together(cross_entropy_loss(self.model), broadcasts, body, datas, ctxs,
                                               self.train, per_client=per_client, shared=shared)
        return [ClientUpdate(upload={**{k: b[k] for k in self.keys("body")}, **new}, weight=d.num_train, state=s,
                             metrics={"train_loss": float(loss)})
                for b, new, s, d, loss in zip(broadcasts, unstack(trained, len(ctxs)), states, datas, losses)]

    def personal_predictor(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> Predictor:
        self.load(broadcast)
        if self.hp.ft_epochs > 0:
            params = None if self.hp.ft_part == "all" else parameters_named(self.model, self.keys("head"))
            with torch.enable_grad():  # also when the caller evaluates under no_grad
                train_epochs(self.model, data.x_train, data.y_train, self.train, ctx.generator, params=params,
                             epochs=self.hp.ft_epochs, lr=self.train.lr * self.hp.ft_lr_scale)
        self.model.eval()
        return self.model
