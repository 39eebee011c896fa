"""FedRep: a shared representation (body) and personal heads, trained in two phases per round."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from pfedkit.algorithms.protocol import RoundContext
from pfedkit.algorithms.registry import register_algorithm
from pfedkit.algorithms.toolkit.batched_training import (
    ClientRows,
    cross_entropy_loss,
    parameter_names,
    stack_payloads,
    train_together,
)
from pfedkit.algorithms.toolkit.dp_sgd import poisson_schedule
from pfedkit.algorithms.toolkit.partial_sharing import PartialSharing, parameters_named
from pfedkit.algorithms.toolkit.privacy import PrivacyLedger
from pfedkit.algorithms.toolkit.training import features_in_batches, train_epochs
from pfedkit.core.config import param
from pfedkit.core.payload import Payload
from pfedkit.data.client_data import ClientData
from pfedkit.stats.privacy_accounting import Mechanism


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
    supports_privacy = True  # DP-SGD in both phases (docs/privacy.md)
    batched = True

    def personal_keys(self) -> list[str]:
        return self.keys("head")

    def privacy_plan(self, round: int, num_train: int) -> list[Mechanism]:
        b = self.train.batch_size
        return [poisson_schedule(num_train, b, self.hp.head_epochs),
                poisson_schedule(num_train, b, self.hp.body_epochs)]

    def train_local(self, data: ClientData, ctx: RoundContext, ledger: PrivacyLedger | None = None
                    ) -> dict[str, float]:
        head = parameters_named(self.model, self.keys("head"))
        body = parameters_named(self.model, self.keys("body"))
        private = ledger.dp_sgd if ledger else lambda: None
        metrics: dict[str, float] = {}
        if self.hp.head_epochs > 0:  # private too when privacy is on: the head shapes the body's gradients
            metrics["head_loss"] = train_epochs(self.model, data.x_train, data.y_train, self.train,
                                                ctx.generator, params=head, epochs=self.hp.head_epochs,
                                                private=private())
        if self.hp.body_epochs > 0:
            metrics["body_loss"] = train_epochs(self.model, data.x_train, data.y_train, self.train,
                                                ctx.generator, params=body, epochs=self.hp.body_epochs,
                                                private=private())
        metrics["train_loss"] = metrics.get("body_loss", metrics.get("head_loss", float("nan")))
        return metrics

    def train_together_local(self, models: list[Payload], datas: list[ClientData], ctxs: list[RoundContext]
                             ) -> tuple[dict[str, Tensor], list[dict[str, float]]]:
        """Both phases for several clients at once. The head phase trains on each client's
        features under its received body (computed once, as `train_epochs` does for a frozen
        body without normalisation layers; the batched path has none), the body phase on images
        with the new heads as per-client constants."""
        device, generators = ctxs[0].device, [c.generator for c in ctxs]
        head_names, body_names = parameter_names(self.model, self.keys("head")), parameter_names(self.model, self.keys("body"))
        heads = stack_payloads(models, head_names, device)
        bodies = stack_payloads(models, body_names, device)
        metrics: list[dict[str, float]] = [{} for _ in ctxs]
        if self.hp.head_epochs > 0:
            feats = []
            for model, data in zip(models, datas):
                self.load({k: model[k] for k in self.keys("body")})
                feats.append(features_in_batches(self.model, data.x_train))
            rows = ClientRows.of_tensors(feats, [d.y_train for d in datas])
            heads, losses = train_together(cross_entropy_loss(self.model.head, "head."), heads, rows, generators,
                                           self.train, epochs=self.hp.head_epochs)
            for m, loss in zip(metrics, losses):
                m["head_loss"] = float(loss)
        if self.hp.body_epochs > 0:
            bodies, losses = train_together(cross_entropy_loss(self.model), bodies, ClientRows.of_clients(datas),
                                            generators, self.train, per_client=heads, epochs=self.hp.body_epochs)
            for m, loss in zip(metrics, losses):
                m["body_loss"] = float(loss)
        for m in metrics:
            m["train_loss"] = m.get("body_loss", m.get("head_loss", float("nan")))
        return {**heads, **bodies}, metrics
