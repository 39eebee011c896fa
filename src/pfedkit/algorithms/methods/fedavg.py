"""FedAvg (McMahan et al., AISTATS 2017): the whole model is shared and averaged by sample count."""

from __future__ import annotations

from pfedkit.algorithms.protocol import Algorithm, ClientUpdate, H, RoundContext
from pfedkit.algorithms.registry import register_algorithm
from pfedkit.algorithms.toolkit.training import LossFn, train_epochs
from pfedkit.core.payload import Payload
from pfedkit.data.client_data import ClientData


@register_algorithm
class FedAvg(Algorithm[H]):
    """Shared: every parameter. Personal: nothing (each client evaluates the global model)."""

    name = "fedavg"
    shares = "the whole model"
    keeps = "nothing (evaluates the global model)"
    paper = "McMahan et al., Communication-Efficient Learning of Deep Networks from Decentralized Data, AISTATS 2017"

    def local_loss(self) -> LossFn | None:
        """The local loss, built once the broadcast is loaded; None = cross-entropy (FedAvg)."""
        return None

    def local_update(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> ClientUpdate:
        self.load(broadcast)
        loss = train_epochs(self.model, data.x_train, data.y_train, self.train, ctx.generator,
                            loss_fn=self.local_loss())
        return ClientUpdate(upload=self.snapshot(), weight=data.num_train, state=state, metrics={"train_loss": loss})
