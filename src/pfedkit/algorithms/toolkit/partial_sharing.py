"""Partial sharing: one part of the model is federated, the rest stays with each client.

The common skeleton of FedPer, FedRep, LG-FedAvg and FedBN. The server state and the broadcast
hold only the shared keys; each client's personal state holds only its personal keys. A local
update loads both into the one workspace model, trains (how is up to the subclass), uploads a
copy of the shared keys and keeps a copy of the personal keys.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Iterable

from torch import nn

from pfedkit.algorithms.protocol import Algorithm, ClientUpdate, H, RoundContext
from pfedkit.algorithms.toolkit.training import train_epochs
from pfedkit.core.payload import Payload, clone_payload
from pfedkit.data.client_data import ClientData


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
        metrics = self.train_local(data, ctx)
        return ClientUpdate(upload=self.snapshot(self.shared), weight=data.num_train,
                            state=self.snapshot(self.personal), metrics=metrics)

    def train_local(self, data: ClientData, ctx: RoundContext) -> dict[str, float]:
        """Train the workspace model (shared and personal parts loaded) on the training split;
        default: ``train.local_epochs`` epochs of cross-entropy over every parameter."""
        loss = train_epochs(self.model, data.x_train, data.y_train, self.train, ctx.generator)
        return {"train_loss": loss}
