"""In-process simulator: drives any Algorithm over in-memory clients, seeded and deterministic.

Every source of randomness is derived from (seed, round, client), so a run resumed from a
checkpoint replays exactly what an uninterrupted run computes. Evaluation follows the protocol:
every client, personal model, at every ``eval_every``-th round and the last.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from pfedkit.algorithms.protocol import Algorithm, ClientUpdate, RoundContext
from pfedkit.core.calibration import CalibrationBins
from pfedkit.core.errors import ConfigError
from pfedkit.core.payload import Payload, clone_payload, payload_nbytes
from pfedkit.core.seeding import numpy_generator, torch_generator
from pfedkit.data.client_data import ClientData, pack_training_splits
from pfedkit.engines.callbacks import Callback, EngineState
from pfedkit.engines.divergence import check_round
from pfedkit.engines.evaluation import CLASS_KEYS, SPLITS, evaluate_client
from pfedkit.engines.report import Record, carry_privacy, privacy_entry, run_summary


@dataclass
class SimulationSettings:
    """How the engine runs (from ``train.*`` and the run's top-level keys)."""

    seed: int = 0
    rounds: int = 10
    client_fraction: float = 1.0
    eval_every: int = 1
    device: str = "cpu"
    batched: str = "auto"
    """Train a round's clients together (``simulate.batched``): auto, always or never (`use_batched`)."""
    batch_clients: int = 0
    """Batched path: at most this many clients per `Algorithm.local_updates` call (0 = all)."""


@dataclass
class SimulationResult:
    """What a run returns: the per-round history, its protocol summary and final states."""

    history: list[Record]
    summary: dict[str, Any]
    server: Payload
    client_states: list[Payload] = field(repr=False)


def sample_clients(seed: int, round: int, candidates: list[int], fraction: float) -> list[int]:
    """The sorted clients taking part in ``round``: max(1, round(fraction * n)) of ``candidates``."""
    m = max(1, int(round_half_up(fraction * len(candidates))))
    if m >= len(candidates):
        return list(candidates)
    chosen = numpy_generator(seed, round, 0xC11E).choice(len(candidates), size=m, replace=False)
    return sorted(candidates[i] for i in chosen)


def use_batched(algo: Algorithm, mode: str, device: torch.device) -> bool:
    """Whether the simulator trains a round's clients together (``simulate.batched``).

    ``never``: one client at a time. ``always``: together; a one-line ConfigError naming the fix
    when the method or the model cannot (`Algorithm.batching_blocker`). ``auto``: together when
    they can and the device is not the CPU (on a CPU the serial path is faster:
    docs/performance.md). (Not on/off: YAML reads those as booleans.)
    """
    if mode not in ("auto", "always", "never"):
        raise ConfigError(f"simulate.batched={mode!r} is not allowed; choose one of auto, always, never")
    if mode == "never":
        return False
    blocker = algo.batching_blocker()
    if mode == "always" and blocker is not None:
        raise ConfigError(f"simulate.batched=always: {blocker}; use simulate.batched=auto or never")
    return blocker is None and (mode == "always" or device.type != "cpu")


def round_half_up(x: float) -> int:
    return int(np.floor(x + 0.5))


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; anything else is passed to torch.device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class RoundEvents:
    """What every engine does around its rounds: keep the history, tell the callbacks, summarise."""

    callbacks: list[Callback]

    def _end_round(self, record: Record, state: EngineState) -> None:
        """Append the round's record to the history and tell every callback."""
        carry_privacy(record, state.history)
        state.history.append(record)
        for cb in self.callbacks:
            cb.on_round_end(record, state)

    def _finish(self, history: list[Record], heldout: list[int], server: Payload, states: list[Payload]
                ) -> SimulationResult:
        """The run's result with its protocol summary, after telling every callback."""
        result = SimulationResult(history, run_summary(history, heldout), server, states)
        for cb in self.callbacks:
            cb.on_run_end(result.history, result.summary)
        return result


class Simulator(RoundEvents):
    """Runs an algorithm round by round over in-memory clients.

    Args:
        algo: the algorithm (its workspace model is moved to the device).
        clients: every client's data; clients whose ``heldout`` flag is set never train.
        settings: seed, rounds, participation, evaluation cadence, device, and whether a round's
            clients train one after another or together (`use_batched`; the training splits are
            then packed into one device tensor for the whole run).
        callbacks: told of the run's start, every round's end and the run's end (progress line,
            checkpoints, metrics file: see ``pfedkit.engines.callbacks``).
    """

    def __init__(self, algo: Algorithm, clients: list[ClientData], settings: SimulationSettings,
                 callbacks: Sequence[Callback] = ()) -> None:
        self.algo, self.clients, self.s = algo, clients, settings
        self.device = resolve_device(settings.device)
        self.algo.model.to(self.device)
        for c in clients:
            c.to(self.device)
        self.callbacks = list(callbacks)
        self.train_ids = [c.client_id for c in clients if not c.heldout]
        if not self.train_ids:
            raise ValueError("every client is held out: nothing would train")
        self.batched = use_batched(algo, settings.batched, self.device)
        if self.batched:  # every training split in one device tensor, for the whole run
            pack_training_splits([clients[k] for k in self.train_ids])

    def run(self, resume_from: EngineState | None = None) -> SimulationResult:
        """Run all rounds (continuing after ``resume_from`` if given) and summarise."""
        if resume_from is not None:
            start_round, history = resume_from.round + 1, list(resume_from.history)
            server, states = resume_from.server, list(resume_from.client_states)
        else:
            start_round, history = 1, []
            server = self.algo.init_server()
            states = [self._off_device(self.algo.init_client(c)) for c in self.clients]
        for cb in self.callbacks:
            cb.on_run_start(self.algo.name, self.s.rounds, start_round)
        if resume_from is None and self.algo.warmup_round:  # round 0: all training clients, no evaluation
            server, states, record = self._train_round(0, server, states, self.train_ids)
            self._end_round(record, EngineState(0, server, states, history))
        for r in range(start_round, self.s.rounds + 1):
            sampled = sample_clients(self.s.seed, r, self.train_ids, self.s.client_fraction)
            server, states, record = self._train_round(r, server, states, sampled)
            if r % self.s.eval_every == 0 or r == self.s.rounds:
                record["eval"] = self.evaluate_all(server, states, r)
            self._end_round(record, EngineState(r, server, states, history))
        return self._finish(history, [c.client_id for c in self.clients if c.heldout], server, states)

    def _off_device(self, payload: Payload) -> Payload:
        """Personal state lives on the CPU between rounds (a copy when the engine runs elsewhere)."""
        return clone_payload(payload, "cpu") if self.device.type != "cpu" else payload

    def _train_round(self, r: int, server: Payload, states: list[Payload], sampled: list[int]
                     ) -> tuple[Payload, list[Payload], Record]:
        t0 = time.perf_counter()
        bcast = self.algo.broadcast(server, r)
        updates: list[ClientUpdate] = []
        bytes_down = 0
        if self.batched:
            size = self.s.batch_clients or len(sampled)
            for i in range(0, len(sampled), size):
                group = sampled[i:i + size]
                ctxs = [RoundContext(r, k, torch_generator(self.s.seed, r, k), self.device) for k in group]
                messages = [self.algo.for_client(bcast, k) for k in group]
                bytes_down += sum(payload_nbytes(m) for m in messages)
                for k, update in zip(group, self.algo.local_updates(messages, [states[k] for k in group],
                                                                    [self.clients[k] for k in group], ctxs)):
                    states[k] = self._off_device(update.state)
                    updates.append(update)
        else:
            for k in sampled:
                ctx = RoundContext(r, k, torch_generator(self.s.seed, r, k), self.device)
                message = self.algo.for_client(bcast, k)
                bytes_down += payload_nbytes(message)
                update = self.algo.local_update(message, states[k], self.clients[k], ctx)
                states[k] = self._off_device(update.state)
                updates.append(update)
        server = self.algo.aggregate(server, updates, r)
        check_round(self.algo, r, updates, server)  # divergence guard: before any callback sees the round
        return server, states, round_record(r, sampled, updates, bytes_down, t0)

    def evaluate_all(self, server: Payload, states: list[Payload], r: int) -> dict[str, Any]:
        """Evaluate every client's personal model.

        Returns, per split (``val``, ``test``): ``<split>_correct``, ``<split>_n`` and
        ``<split>_ece`` (ECE of each client, NaN for an empty split), lists indexed by client id;
        ``<split>_calib``, the calibration bins pooled over all clients
        (``CalibrationBins.to_dict``: ``counts``, ``conf_sum``, ``correct_sum``); and, only when
        some clients are held out, ``<split>_calib_heldout``, the bins pooled over the held-out
        clients with their ids under ``clients``. Plain lists, JSON-serialisable.
        """
        bcast = self.algo.broadcast(server, r)
        results = []
        for c in self.clients:
            ctx = RoundContext(r, c.client_id, torch_generator(self.s.seed, r, c.client_id, 0xE7A1), self.device)
            results.append(evaluate_client(self.algo, self.algo.for_client(bcast, c.client_id), states[c.client_id],
                                           c, ctx))
        return pool_evaluations(results, [c.client_id for c in self.clients if c.heldout])


def round_record(r: int, sampled: list[int], updates: list[ClientUpdate], bytes_down: int, t0: float) -> Record:
    """A training round's record: its clients, the mean of their ``train_loss`` metrics, the
    payload bytes sent and received, and the seconds since ``t0`` (a ``time.perf_counter()``)."""
    losses = [u.metrics.get("train_loss", float("nan")) for u in updates]
    record = {
        "round": r,
        "clients": sampled,
        "train_loss": float(np.nanmean(losses)) if not np.all(np.isnan(losses)) else float("nan"),
        "bytes_down": bytes_down,
        "bytes_up": sum(payload_nbytes(u.upload) for u in updates),
        "seconds": time.perf_counter() - t0,
    }
    return record | privacy_entry(updates)


def pool_evaluations(results: list[dict[str, Any]], heldout: list[int]) -> dict[str, Any]:
    """The ``eval`` entry of a record from every client's `evaluate_client` result, in client-id
    order (see `Simulator.evaluate_all`); ``heldout`` lists the held-out clients' ids."""
    ev: dict[str, Any] = {f"{s}_{key}": [] for s in SPLITS for key in ("correct", "n")}
    ev |= {f"{s}_ece": [] for s in SPLITS}
    pooled = {s: CalibrationBins() for s in SPLITS}
    pooled_heldout = {s: CalibrationBins() for s in SPLITS}
    for k, res in enumerate(results):
        for s in SPLITS:
            bins = res[f"{s}_calib"]
            assert isinstance(bins, CalibrationBins)
            ev[f"{s}_correct"].append(res[f"{s}_correct"])
            ev[f"{s}_n"].append(res[f"{s}_n"])
            ev[f"{s}_ece"].append(bins.ece())
            pooled[s] = pooled[s] + bins
            if k in heldout:
                pooled_heldout[s] = pooled_heldout[s] + bins
    for s in SPLITS:
        ev[f"{s}_calib"] = pooled[s].to_dict()
        if heldout:
            ev[f"{s}_calib_heldout"] = {"clients": heldout, **pooled_heldout[s].to_dict()}
    for key in CLASS_KEYS:  # per client and class (an engine whose replies lack them leaves them out)
        if all(key in res for res in results):
            ev[key] = [list(res[key]) for res in results]
    return ev
