"""FedAvg (McMahan et al., AISTATS 2017): the whole model is shared and averaged by sample count."""

from __future__ import annotations

from pfedkit.algorithms.protocol import Algorithm, ClientUpdate, H, RoundContext
from pfedkit.algorithms.registry import register_algorithm
from pfedkit.algorithms.toolkit.batched_training import (
    ClientLoss,
    constants_of,
    cross_entropy_loss,
    parameter_names,
    train_round_together,
    unstack,
)
from pfedkit.algorithms.toolkit.dp_sgd import poisson_schedule
from pfedkit.algorithms.toolkit.privacy import ledger_for
from pfedkit.algorithms.toolkit.training import LossFn, train_epochs
from pfedkit.core.payload import Payload
from pfedkit.data.client_data import ClientData
from pfedkit.stats.privacy_accounting import Mechanism


@register_algorithm
class FedAvg(Algorithm[H]):
    """Shared: every parameter. Personal: nothing (each client evaluates the global model)."""

    name = "fedavg"
    shares = "the whole model"
    keeps = "nothing (evaluates the global model)"
    paper = "McMahan et al., Communication-Efficient Learning of Deep Networks from Decentralized Data, AISTATS 2017"
    batched = True
    supports_privacy = True  # DP-SGD on every parameter; uniform aggregation weights

    def privacy_plan(self, round: int, num_train: int) -> list[Mechanism]:
        return [poisson_schedule(num_train, self.train.batch_size, self.train.local_epochs)]

    def local_loss(self) -> LossFn | None:
        """The local loss, built once the broadcast is loaded; None = cross-entropy (FedAvg)."""
        return None

    def client_loss(self) -> ClientLoss:
        """The local loss of the batched path (`local_loss`'s counterpart, written for one client
        whose broadcast weights are the tensors ``anchor.<name>``): weighted cross-entropy."""
        return cross_entropy_loss(self.model)

    def local_update(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> ClientUpdate:
        self.load(broadcast)
        ledger = ledger_for(self, state, data.num_train)
        loss = train_epochs(self.model, data.x_train, data.y_train, self.train, ctx.generator,
                            loss_fn=self.local_loss(), private=ledger.dp_sgd())
        return ClientUpdate(upload=self.snapshot(), weight=ledger.weight(data.num_train), state=ledger.state(state),
                            metrics={"train_loss": loss, **ledger.metrics()})

    def local_updates(self, broadcasts: list[Payload], states: list[Payload], datas: list[ClientData],
                      ctxs: list[RoundContext]) -> list[ClientUpdate]:
        device = ctxs[0].device
        names = parameter_names(self.model)
        per_client, shared = constants_of(broadcasts, names, device)
        anchors = {f"anchor.{n}": t for n, t in per_client.items()}, {f"anchor.{n}": t for n, t in shared.items()}
        trained, losses = train_round_together(self.client_loss(), broadcasts, names, datas, ctxs, self.train,
                                               per_client=anchors[0], shared=anchors[1])
        return [ClientUpdate(upload={**b, **new}, weight=float(d.num_train), state=s, metrics={"train_loss": float(loss)})
                for b, new, s, d, loss in zip(broadcasts, unstack(trained, len(ctxs)), states, datas, losses)]
