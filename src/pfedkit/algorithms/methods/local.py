"""Local: every client trains its own model; nothing is shared (the no-federation baseline)."""

from __future__ import annotations

from pfedkit.algorithms.protocol import Algorithm, ClientUpdate, NoHParams, RoundContext
from pfedkit.algorithms.registry import register_algorithm
from pfedkit.algorithms.toolkit.batched_training import (
    cross_entropy_loss,
    parameter_names,
    train_round_together,
    unstack,
)
from pfedkit.algorithms.toolkit.privacy import ledger_for
from pfedkit.algorithms.toolkit.training import train_epochs
from pfedkit.core.payload import Payload
from pfedkit.data.client_data import ClientData


@register_algorithm
class Local(Algorithm[NoHParams]):
    """Each client keeps the whole model as personal state, trained only on its own data."""

    name = "local"
    shares = "nothing"
    keeps = "the whole model"
    paper = "no federation (lower reference)"
    batched = True
    supports_privacy = True  # nothing leaves the client: epsilon 0 (reported as such)

    def init_client(self, data: ClientData) -> Payload:
        return self.snapshot()

    def broadcast(self, server: Payload, round: int) -> Payload:
        return {}

    def local_update(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> ClientUpdate:
        self.load(state)
        ledger = ledger_for(self, state, data.num_train)  # no release: only reports epsilon 0 when private
        loss = train_epochs(self.model, data.x_train, data.y_train, self.train, ctx.generator)
        return ClientUpdate(upload={}, weight=0.0, state=ledger.state(self.snapshot()),
                            metrics={"train_loss": loss, **ledger.metrics()})

    def local_updates(self, broadcasts: list[Payload], states: list[Payload], datas: list[ClientData],
                      ctxs: list[RoundContext]) -> list[ClientUpdate]:
        # privacy off here (Algorithm.batching_blocker): the state needs no privacy ledger
        trained, losses = train_round_together(cross_entropy_loss(self.model), states, parameter_names(self.model),
                                               datas, ctxs, self.train)
        return [ClientUpdate(upload={}, weight=0.0, state={**s, **new}, metrics={"train_loss": float(loss)})
                for s, new, loss in zip(states, unstack(trained, len(ctxs)), losses)]
