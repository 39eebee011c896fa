"""FedRep: a shared representation (body) and personal heads, trained in two phases per round."""

from __future__ import annotations

from dataclasses import dataclass

from pfedkit.algorithms.protocol import RoundContext
from pfedkit.algorithms.registry import register_algorithm
from pfedkit.algorithms.toolkit.partial_sharing import PartialSharing, parameters_named
from pfedkit.algorithms.toolkit.training import train_epochs
from pfedkit.core.config import param
from pfedkit.data.client_data import ClientData


@dataclass
class FedRepHParams:
    head_epochs: int = param(10, lo=0, hi=1000, doc="epochs on the personal head, body frozen (first phase)")
    body_epochs: int = param(1, lo=0, hi=1000, doc="epochs on the shared body, head frozen (second phase)")


@register_algorithm
class FedRep(PartialSharing[FedRepHParams]):
    """FedRep (Collins, Hassani, Mokhtari, Shakkottai, "Exploiting Shared Representations for
    Personalized Federated Learning", ICML 2021).

    Shared: the body (every ``body.*`` tensor), uploaded and sample-weighted averaged.
    Personal: the head (every ``head.*`` tensor), kept in the client's state.
    Local update, in this order: ``head_epochs`` epochs on the head with the body frozen, then
    ``body_epochs`` epochs on the body with the (new) head frozen; only the body is uploaded.
    Defaults follow the paper: many head epochs per representation epoch, 10 and 1 here (the
    authors' code runs 9 + 1 within its 10 local epochs). FedRep therefore uses these two numbers
    instead of ``train.local_epochs``. Buffers (e.g. BatchNorm statistics) of
    the body keep updating in train mode during the head phase, as in the authors' code.
    """

    name = "fedrep"
    shares = "body"
    keeps = "head (trained first, body frozen)"
    paper = ("Collins et al., Exploiting Shared Representations for Personalized Federated Learning, "
             "ICML 2021")

    def personal_keys(self) -> list[str]:
        return self.keys("head")

    def train_local(self, data: ClientData, ctx: RoundContext) -> dict[str, float]:
        head = parameters_named(self.model, self.keys("head"))
        body = parameters_named(self.model, self.keys("body"))
        metrics: dict[str, float] = {}
        if self.hp.head_epochs > 0:
            metrics["head_loss"] = train_epochs(self.model, data.x_train, data.y_train, self.train,
                                                ctx.generator, params=head, epochs=self.hp.head_epochs)
        if self.hp.body_epochs > 0:
            metrics["body_loss"] = train_epochs(self.model, data.x_train, data.y_train, self.train,
                                                ctx.generator, params=body, epochs=self.hp.body_epochs)
        metrics["train_loss"] = metrics.get("body_loss", metrics.get("head_loss", float("nan")))
        return metrics
