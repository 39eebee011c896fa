"""The algorithm protocol: what every federated method implements, independent of any engine.

Server side: ``init_server`` → (each round) ``broadcast`` → ``for_client`` (what one client
receives, by default the whole broadcast) → clients → ``aggregate``.
Client side: ``init_client`` once, ``local_update`` when sampled, ``personal_predictor`` for
evaluation. All state that must survive a round lives in payloads (``dict[str, Tensor]``): the
server state and one personal state per client. An engine stores them (and checkpoints them);
the algorithm object itself holds no per-run state, only its hyper-parameters and a single
workspace model into which payloads are loaded (no per-client deep copies).

An algorithm is generic in its typed hyper-parameters (``class FedProx(Algorithm[FedProxHParams])``),
validated once from ``hp.<name>.*`` and kept typed as ``self.hp``. Every payload key it makes
that is not a workspace-model ``state_dict`` key starts with its declared ``key_prefix`` (or a
prefix of toolkit machinery it declares in ``shared_prefixes``); the base class checks this on
every payload ``init_server``, ``init_client``, ``local_update`` and ``aggregate`` return, and
stamps each ``ClientUpdate`` with its sender's id.
"""

from __future__ import annotations

import functools
import typing
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Generic, TypeVar

import torch

from pfedkit.core.config import PrivacyConfig, TrainSettings
from pfedkit.core.payload import Payload, clone_payload, weighted_average
from pfedkit.data.client_data import ClientData
from pfedkit.models.split import SplitModel
from pfedkit.stats.privacy_accounting import Mechanism

Predictor = Callable[[torch.Tensor], torch.Tensor]
"""Maps (B, C, H, W) images to (B, num_classes) logits or log-probabilities."""

H = TypeVar("H")
"""An algorithm's hyper-parameter dataclass."""

__all__ = ["Algorithm", "ClientUpdate", "NoHParams", "Predictor", "RoundContext", "TrainSettings"]


@dataclass
class RoundContext:
    """What a client step may use besides its data: the round, the client's id, its own RNG and
    the device.

    ``generator`` is seeded from (run seed, round, client id), so a round replays identically.
    Round 0 is the optional warm-up round (see ``Algorithm.warmup_round``).
    """

    round: int
    client_id: int
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
    client_id: int = -1
    """Set by the base class from the round context: who sent this update."""


@dataclass
class NoHParams:
    """Hyper-parameters of an algorithm that has none."""


_CHECKED_HOOKS = ("init_server", "init_client", "local_update", "local_updates", "aggregate")
PRIVACY_PREFIX = "dp."
"""Key prefix of the privacy ledger's entries in personal states (`toolkit.privacy`)."""



class Algorithm(ABC, Generic[H]):
    """Base class of every federated method.

    Subclasses set ``name`` and, when they have hyper-parameters, name their dataclass as the
    type argument (``Algorithm[MyHParams]``; fields use ``pfedkit.core.config.param`` for ranges),
    then implement ``local_update``; the defaults implement FedAvg-style sharing of the whole
    model. Per-run constants (key lists, helper modules) go in ``setup``. ``paper`` names the
    reference; ``key_prefix`` (e.g. ``"gm."``) the namespace of the method's own payload keys.
    """

    name: ClassVar[str]
    key_prefix: ClassVar[str] = ""
    """Every payload key of this method that is not a model ``state_dict`` key starts with it
    ("" = the method uses model keys only). Registered prefixes are unique."""
    shared_prefixes: ClassVar[tuple[str, ...]] = ()
    """Key prefixes of toolkit machinery this method uses (e.g. prototypes' ``"proto."``)."""
    paper: ClassVar[str] = ""
    shares: ClassVar[str] = "the whole model"
    """One line for the methods table: what is uploaded and aggregated."""
    keeps: ClassVar[str] = "nothing"
    """One line for the methods table: what stays personal on the client."""
    HParams: ClassVar[type] = NoHParams
    """The hyper-parameter dataclass, taken from the type argument ``Algorithm[HParams]``."""
    warmup_round: ClassVar[bool] = False
    """If True the engine runs a round 0 (all training clients, no aggregation weight semantics
    imposed) before round 1, e.g. to collect statistics before any training."""
    batched: ClassVar[bool] = False
    """True when `local_updates` trains the clients it is given together (stacked parameters,
    ``pfedkit.algorithms.toolkit.batched_training``); the simulator's batched path
    (``simulate.batched``) is open to such methods only."""
    supports_privacy: ClassVar[bool] = False
    """Whether the method runs with ``privacy.*`` on (docs/privacy.md): every upload is then a
    DP release made through `toolkit.privacy.ledger_for`, and `privacy_plan` lists the releases."""

    def __init__(self, model: SplitModel, hp: H, train: TrainSettings, num_classes: int, seed: int = 0,
                 privacy: PrivacyConfig | None = None) -> None:
        """``hp`` is an instance of ``HParams``. ``seed`` is the run seed, for server-side
        randomness (e.g. sampling from a generator): derive generators from (seed, round) with
        ``pfedkit.core.seeding`` so a resumed run replays identically. ``privacy``: the run's
        ``privacy.*`` (default: off). Ends by calling `setup`."""
        if not isinstance(hp, self.HParams):
            raise TypeError(f"{self.name}: hp must be a {self.HParams.__name__}, got {type(hp).__name__}")
        self.privacy = privacy or PrivacyConfig()
        if self.privacy.enabled and not self.supports_privacy:
            from pfedkit.algorithms.registry import check_privacy_support

            check_privacy_support(type(self), self.privacy)
        self.model = model
        self.seed = seed
        self.hp: H = hp
        self.train = train
        self.num_classes = num_classes
        self._model_keys = frozenset(model.state_dict())
        self._own_prefixes = ((self.key_prefix,) if self.key_prefix else ()) + tuple(self.shared_prefixes)
        if self.supports_privacy:
            self._own_prefixes += (PRIVACY_PREFIX,)
        self.setup()

    @classmethod
    def supports_model(cls, name: str, options: Any) -> bool:
        """Whether this method runs on ``model.name=name`` with those options (``--algos all``
        picks the methods that do); default: every model."""
        return True

    @classmethod
    def equivalent_to(cls, model: SplitModel, hp: Any) -> str | None:
        """The method this one computes exactly (same updates and predictions, bit for bit) with
        this workspace ``model`` and hyper-parameters ``hp``, as ``"name (why)"``, e.g. ``"fedavg
        (model has no norm layers)"``; None when it is a method of its own. Comparison tables
        print it beside the row. Declare only identities a test confirms; default: None."""
        return None

    def privacy_plan(self, round: int, num_train: int) -> list[Mechanism]:
        """The DP releases one local update in ``round`` of a client with ``num_train`` training
        records makes with privacy on (what its noise is calibrated for; `toolkit.dp_sgd`'s
        ``poisson_schedule`` for DP-SGD, ``toolkit.privacy.STATS_RELEASE`` for statistics);
        default: none, a method that shares nothing trained on its data."""
        return []

    def setup(self) -> None:
        """Hook: derive per-run constants from the workspace model and ``self.hp`` (key lists,
        initial copies, helper modules). Runs once, at the end of construction."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            args = typing.get_args(base)
            if args and isinstance(args[0], type):
                cls.HParams = args[0]
        for hook in _CHECKED_HOOKS:
            if hook in cls.__dict__:
                setattr(cls, hook, _checked(cls.__dict__[hook], hook))

    def check_keys(self, payload: Payload, where: str) -> None:
        """ValueError naming the first key of ``payload`` that is neither a model key nor under
        one of this method's prefixes."""
        for key in payload:
            if key not in self._model_keys and not key.startswith(self._own_prefixes or ("\0",)):
                allowed = " or ".join(repr(p) for p in self._own_prefixes) or "none (model keys only)"
                raise ValueError(f"{self.name}.{where}: payload key {key!r} is not a model key and not under "
                                 f"the method's prefix ({allowed})")

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

    def local_updates(self, broadcasts: list[Payload], states: list[Payload], datas: list[ClientData],
                      ctxs: list[RoundContext]) -> list[ClientUpdate]:
        """The local updates of several clients of one round (lists in the same client order).

        Default: `local_update` for each client in turn. A method with ``batched = True``
        overrides it to train the clients together; its updates equal the serial ones up to
        rounding (``docs/performance.md`` states the tolerance, ``tests/algorithms/test_batched.py``
        checks it).
        """
        return [self.local_update(b, s, d, c) for b, s, d, c in zip(broadcasts, states, datas, ctxs)]

    def batching_blocker(self) -> str | None:
        """Why this run cannot train its clients together (one line), or None when it can: the
        method has no batched update, or the model has layers that batching would change."""
        if self.privacy.enabled:  # each client's releases go through its own privacy ledger
            return "privacy.* trains every client on its own (DP-SGD and its privacy ledger)"
        if not self.batched:
            return f"{self.name} has no batched local update"
        from pfedkit.algorithms.toolkit.batched_training import batching_blocker

        return batching_blocker(self.model)

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


def _checked(method: Callable[..., Any], hook: str) -> Callable[..., Any]:
    """``method`` whose returned payloads pass `Algorithm.check_keys`; a ``local_update`` result
    (each of ``local_updates``' results) is also stamped with the client id of its round context."""

    @functools.wraps(method)
    def run(self: Algorithm, *args: Any, **kwargs: Any) -> Any:
        out = method(self, *args, **kwargs)
        if hook == "local_updates":
            ctxs = kwargs.get("ctxs", args[-1] if args else [])
            for update, ctx in zip(out, ctxs):
                self.check_keys(update.upload, f"{hook} upload")
                self.check_keys(update.state, f"{hook} state")
                update.client_id = ctx.client_id
        elif isinstance(out, ClientUpdate):
            self.check_keys(out.upload, f"{hook} upload")
            self.check_keys(out.state, f"{hook} state")
            ctx = kwargs.get("ctx", args[-1] if args else None)
            if isinstance(ctx, RoundContext):
                out.client_id = ctx.client_id
        else:
            self.check_keys(out, hook)
        return out

    return run
