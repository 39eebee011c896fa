"""The algorithm protocol: what every federated method implements, independent of any engine.

Server side: ``init_server`` → (each round) ``broadcast`` → ``for_client`` (what one client
receives, by default the whole broadcast) → clients → ``aggregate``.
Client side: ``init_client`` once, ``local_update`` when sampled, ``personal_predictor`` for
evaluation. All state that must survive a round lives in payloads (``dict[str, Tensor]``): the
server state and one personal state per client. An engine stores them (and checkpoints them);
the algorithm object itself holds no per-run state, only its hyper-parameters and a single
workspace model into which payloads are loaded (no per-client deep copies).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch

from pfedkit.core.payload import Payload, clone_payload, weighted_average
from pfedkit.data.client_data import ClientData
from pfedkit.models.split import SplitModel

Predictor = Callable[[torch.Tensor], torch.Tensor]
"""Maps (B, C, H, W) images to (B, num_classes) logits or log-probabilities."""


@dataclass(frozen=True)
class TrainSettings:
    """Local optimisation settings shared by every algorithm (from ``train.*`` in the config)."""

    local_epochs: int = 1
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.0
    weight_decay: float = 0.0


@dataclass
class RoundContext:
    """What a client step may use besides its data: the round, its own RNG and the device.

    ``generator`` is seeded from (run seed, round, client id), so a round replays identically.
    Round 0 is the optional warm-up round (see ``Algorithm.warmup_round``).
    """

    round: int
    generator: torch.Generator
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


@dataclass
class ClientUpdate:
    """The result of one local update.

    upload: what the client sends to the server. weight: its aggregation weight (usually the
    number of training samples). state: the client's new personal state. metrics: scalars such
    as the mean training loss.
    """

    upload: Payload
    weight: float
    state: Payload
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class NoHParams:
    """Hyper-parameters of an algorithm that has none."""


class Algorithm(ABC):
    """Base class of every federated method.

    Subclasses set ``name``, ``HParams`` (a dataclass whose fields use ``pfedkit.core.config.param``
    for ranges) and implement ``local_update``; the defaults implement FedAvg-style sharing of the
    whole model. ``paper`` names the reference.
    """

    name: ClassVar[str]
    paper: ClassVar[str] = ""
    shares: ClassVar[str] = "the whole model"
    """One line for the methods table: what is uploaded and aggregated."""
    keeps: ClassVar[str] = "nothing"
    """One line for the methods table: what stays personal on the client."""
    HParams: ClassVar[type] = NoHParams
    warmup_round: ClassVar[bool] = False
    """If True the engine runs a round 0 (all training clients, no aggregation weight semantics
    imposed) before round 1, e.g. to collect statistics before any training."""

    def __init__(self, model: SplitModel, hp: Any, train: TrainSettings, num_classes: int, seed: int = 0) -> None:
        """``seed`` is the run seed, for server-side randomness (e.g. sampling from a generator):
        derive generators from (seed, round) with ``pfedkit.core.seeding`` so a resumed run
        replays identically."""
        self.model = model
        self.seed = seed
        self.hp = hp
        self.train = train
        self.num_classes = num_classes

    # ----- server side -------------------------------------------------------------------
    def init_server(self) -> Payload:
        """Initial server state; default: a copy of the workspace model's weights."""
        return clone_payload(self.model.state_dict())

    def broadcast(self, server: Payload, round: int) -> Payload:
        """What every sampled client receives this round; default: the whole server state."""
        return server

    def for_client(self, broadcast: Payload, client_id: int) -> Payload:
        """The part of ``broadcast`` that client ``client_id`` receives (and is billed for);
        default: all of it. Methods with per-client server outputs (FedPAC's combined heads)
        send each client only its own."""
        return broadcast

    def aggregate(self, server: Payload, updates: list[ClientUpdate], round: int) -> Payload:
        """New server state from this round's uploads; default: sample-weighted average, keys
        not uploaded keep their server value."""
        if not updates or not updates[0].upload:
            return server
        avg = weighted_average([u.upload for u in updates], [u.weight for u in updates])
        return {**server, **avg}

    # ----- client side -------------------------------------------------------------------
    def init_client(self, data: ClientData) -> Payload:
        """Initial personal state of a client; default: none. Engines call it for every client
        right after ``init_server``, while the workspace model still holds the initial weights."""
        return {}

    @abstractmethod
    def local_update(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> ClientUpdate:
        """Train on the client's training split; return upload, weight, new state and metrics."""

    def personal_predictor(
        self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext
    ) -> Predictor:
        """The client's personal model as it stands now: default, the broadcast weights with the
        personal state loaded on top. May use the client's training split (never val/test)."""
        self.load(broadcast)
        self.load(state)
        self.model.eval()
        return self.model

    # ----- helpers for subclasses --------------------------------------------------------
    @property
    def _state_refs(self) -> dict[str, torch.Tensor]:
        """The workspace model's state_dict, read fresh (the engine may have moved the model)."""
        return self.model.state_dict()

    def load(self, payload: Payload) -> None:
        """Copy the payload's model entries (keys of the workspace state_dict) into the model."""
        refs = self._state_refs
        with torch.no_grad():
            for key, value in payload.items():
                ref = refs.get(key)
                if ref is not None:
                    ref.copy_(value)

    def snapshot(self, keys: list[str] | None = None) -> Payload:
        """Copies of the workspace model's tensors (all, or the given state_dict keys)."""
        refs = self._state_refs
        keys = list(refs) if keys is None else keys
        return {k: refs[k].detach().clone() for k in keys}

    def keys(self, part: str) -> list[str]:
        """state_dict keys of ``"body"`` or ``"head"``."""
        return self.model.part_names(part)
