"""Partial sharing: one part of the model is federated, the rest stays with each client.

The common skeleton of FedPer, FedRep, LG-FedAvg and FedBN. The server state and the broadcast
hold only the shared keys; each client's personal state holds only its personal keys. A local
update loads both into the one workspace model, trains (how is up to the subclass), uploads a
copy of the shared keys and keeps a copy of the personal keys.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Iterable

from torch import Tensor, nn

from pfedkit.algorithms.protocol import Algorithm, ClientUpdate, H, RoundContext
from pfedkit.algorithms.toolkit.batched_training import (
    cross_entropy_loss,
    parameter_names,
    train_round_together,
    unstack,
)
from pfedkit.algorithms.toolkit.dp_sgd import poisson_schedule
from pfedkit.algorithms.toolkit.privacy import PrivacyLedger, ledger_for
from pfedkit.algorithms.toolkit.training import train_epochs
from pfedkit.core.payload import Payload, clone_payload
from pfedkit.data.client_data import ClientData
from pfedkit.stats.privacy_accounting import Mechanism


def parameters_named(model: nn.Module, keys: Iterable[str]) -> list[nn.Parameter]:
    """The model's parameters whose names are among ``keys`` (state_dict keys; buffers in
    ``keys`` are ignored), in registration order."""
    wanted = set(keys)
    return [p for n, p in model.named_parameters() if n in wanted]


class PartialSharing(Algorithm[H]):
    """Base class: ``personal_keys()`` stay local, every other state_dict key is averaged.

    Personal keys start, for every client, from the workspace model's values at construction
    (the seeded initial model), however late an engine calls ``init_client``. Subclasses override
    ``personal_keys`` (and may extend ``setup``, calling super) and, if their local training differs from plain cross-entropy on every
    parameter, ``train_local``. The two key lists are computed once, at construction.
    """

    def setup(self) -> None:
        self.personal: list[str] = self.personal_keys()
        personal = set(self.personal)
        self.shared: list[str] = [k for k in self._state_refs if k not in personal]
        self._initial_personal = self.snapshot(self.personal)

    @abstractmethod
    def personal_keys(self) -> list[str]:
        """state_dict keys that never leave the client (called once, at construction)."""

    def init_server(self) -> Payload:
        return self.snapshot(self.shared)

    def init_client(self, data: ClientData) -> Payload:
        return clone_payload(self._initial_personal)

    def local_update(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> ClientUpdate:
        self.load(broadcast)
        self.load(state)
        ledger = ledger_for(self, state, data.num_train)
        metrics = self.train_local(data, ctx, ledger)
        return ClientUpdate(upload=self.snapshot(self.shared), weight=ledger.weight(data.num_train),
                            state=ledger.state(self.snapshot(self.personal)), metrics={**metrics, **ledger.metrics()})

    def train_local(self, data: ClientData, ctx: RoundContext, ledger: PrivacyLedger | None = None
                    ) -> dict[str, float]:
        """Train the workspace model (shared and personal parts loaded) on the training split;
        default: ``train.local_epochs`` epochs of cross-entropy over every parameter. With
        privacy on, every `train_epochs` call passes ``private=ledger.dp_sgd()`` (the personal
        part too: it shapes the shared part's gradients, so it must not see the data unnoised).
        ``ledger`` None: no privacy."""
        loss = train_epochs(self.model, data.x_train, data.y_train, self.train, ctx.generator,
                            private=ledger.dp_sgd() if ledger else None)
        return {"train_loss": loss}

    def local_updates(self, broadcasts: list[Payload], states: list[Payload], datas: list[ClientData],
                      ctxs: list[RoundContext]) -> list[ClientUpdate]:
        """The batched path (subclasses with ``batched = True``; privacy off): each client's model
        is the broadcast's shared keys with its state's personal keys, trained by
        `train_together_local`."""
        models = [{**b, **s} for b, s in zip(broadcasts, states)]
        trained, metrics = self.train_together_local(models, datas, ctxs)
        updates = []
        for model, new, m, d in zip(models, unstack(trained, len(ctxs)), metrics, datas):
            model = {**model, **new}
            updates.append(ClientUpdate(upload={k: model[k] for k in self.shared}, weight=float(d.num_train),
                                        state={k: model[k] for k in self.personal}, metrics=m))
        return updates

    def train_together_local(self, models: list[Payload], datas: list[ClientData], ctxs: list[RoundContext]
                             ) -> tuple[dict[str, Tensor], list[dict[str, float]]]:
        """`train_local` for several clients at once: their models (every state_dict key) in, their
        trained parameters ((K, ...) each) and metrics out; default: cross-entropy over every
        parameter for ``train.local_epochs`` epochs."""
        trained, losses = train_round_together(cross_entropy_loss(self.model), models, parameter_names(self.model),
                                               datas, ctxs, self.train)
        return trained, [{"train_loss": float(loss)} for loss in losses]

    def privacy_plan(self, round: int, num_train: int) -> list[Mechanism]:
        return [poisson_schedule(num_train, self.train.batch_size, self.train.local_epochs)]
