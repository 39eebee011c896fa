"""Local: every client trains its own model; nothing is shared (the no-federation baseline)."""

from __future__ import annotations

from pfedkit.algorithms.protocol import Algorithm, ClientUpdate, NoHParams, RoundContext
from pfedkit.algorithms.registry import register_algorithm
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

    def init_client(self, data: ClientData) -> Payload:
        return self.snapshot()

    def broadcast(self, server: Payload, round: int) -> Payload:
        return {}

    def local_update(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> ClientUpdate:
        self.load(state)
        loss = train_epochs(self.model, data.x_train, data.y_train, self.train, ctx.generator)
        return ClientUpdate(upload={}, weight=0.0, state=self.snapshot(), metrics={"train_loss": loss})
