"""LG-FedAvg: local representations (body) per client, a global head averaged by FedAvg."""

from __future__ import annotations

from dataclasses import dataclass

from pfedkit.algorithms.protocol import ClientUpdate, Predictor, RoundContext
from pfedkit.algorithms.registry import register_algorithm
from pfedkit.algorithms.toolkit.partial_sharing import PartialSharing
from pfedkit.core.config import param
from pfedkit.core.payload import Payload
from pfedkit.data.client_data import ClientData


@dataclass
class LGFedAvgHParams:
    pretrain_rounds: int = param(0, lo=0, hi=100_000,
                                 doc="first rounds run as plain FedAvg (every tensor shared) before the "
                                     "bodies become local; the paper starts from a FedAvg-trained model")


@register_algorithm
class LGFedAvg(PartialSharing[LGFedAvgHParams]):
    """LG-FedAvg (Liang, Liu, Ziyin, Allen, Auerbach, Brent, Salakhutdinov, Morency, "Think
    Locally, Act Globally: Federated Learning with Local and Global Representations", NeurIPS 2019
    Workshop on Federated Learning; arXiv:2001.01523, 2020).

    Shared: the head (every ``head.*`` tensor), uploaded and sample-weighted averaged; it is also
    all that is broadcast. Personal: the body (every ``body.*`` tensor), kept in the client's
    state; all clients start from the same initial body. Local update: ``train.local_epochs``
    epochs of cross-entropy over body and head together.

    Pretraining (``pretrain_rounds`` > 0): the paper initialises every client from a model
    trained by FedAvg. Rounds 1..pretrain_rounds here are FedAvg: the whole model is broadcast,
    trained, uploaded and averaged, and evaluation uses the global model. Each client keeps the
    body of its last pretraining update, which becomes its local body afterwards (a client that
    never took part keeps the initial body). Default 0: no pretraining, as in common benchmark
    code.
    """

    name = "lg_fedavg"
    shares = "head"
    keeps = "body"
    paper = ("Liang et al., Think Locally, Act Globally: Federated Learning with Local and Global "
             "Representations, NeurIPS 2019 FL workshop (arXiv:2001.01523)")

    def personal_keys(self) -> list[str]:
        return self.keys("body")

    def _pretraining(self, round: int) -> bool:
        return round <= self.hp.pretrain_rounds

    def init_server(self) -> Payload:
        return self.snapshot() if self.hp.pretrain_rounds > 0 else super().init_server()

    def broadcast(self, server: Payload, round: int) -> Payload:
        return server if self._pretraining(round) else {k: server[k] for k in self.shared}

    def local_update(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> ClientUpdate:
        if not self._pretraining(ctx.round):
            return super().local_update(broadcast, state, data, ctx)
        self.load(broadcast)  # the global body replaces the client's during pretraining
        metrics = self.train_local(data, ctx)
        return ClientUpdate(upload=self.snapshot(), weight=data.num_train,
                            state=self.snapshot(self.personal), metrics=metrics)

    def personal_predictor(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> Predictor:
        if not self._pretraining(ctx.round):
            return super().personal_predictor(broadcast, state, data, ctx)
        self.load(broadcast)
        self.model.eval()
        return self.model
