"""In-process simulator: drives any Algorithm over in-memory clients, seeded and deterministic.

Every source of randomness is derived from (seed, round, client), so a run resumed from a
checkpoint replays exactly what an uninterrupted run computes. Evaluation follows the protocol:
every client, personal model, at every ``eval_every``-th round and the last.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from pfedkit.algorithms.protocol import Algorithm, ClientUpdate, RoundContext
from pfedkit.core.payload import Payload, clone_payload, payload_nbytes
from pfedkit.core.seeding import numpy_generator, torch_generator
from pfedkit.data.client_data import ClientData
from pfedkit.engines.evaluation import evaluate_client
from pfedkit.engines.progress import Progress
from pfedkit.engines.report import Record, run_summary, split_summary

RoundCallback = Callable[[Record], None]


@dataclass
class SimulationSettings:
    """How the engine runs (from ``train.*`` and the run's top-level keys)."""

    seed: int = 0
    rounds: int = 10
    client_fraction: float = 1.0
    eval_every: int = 1
    checkpoint_every: int = 0
    device: str = "cpu"


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


def round_half_up(x: float) -> int:
    return int(np.floor(x + 0.5))


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; anything else is passed to torch.device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Simulator:
    """Runs an algorithm round by round over in-memory clients.

    Args:
        algo: the algorithm (its workspace model is moved to the device).
        clients: every client's data; clients whose ``heldout`` flag is set never train.
        settings: seed, rounds, participation, evaluation and checkpoint cadence.
        checkpoint_path: where checkpoints go (required when ``checkpoint_every`` > 0).
        on_round: called with each round's record (e.g. to append it to a metrics file).
    """

    def __init__(self, algo: Algorithm, clients: list[ClientData], settings: SimulationSettings,
                 checkpoint_path: Path | None = None, on_round: RoundCallback | None = None,
                 progress: bool = True) -> None:
        self.algo, self.clients, self.s = algo, clients, settings
        self.device = resolve_device(settings.device)
        self.algo.model.to(self.device)
        for c in clients:
            c.to(self.device)
        self.checkpoint_path = checkpoint_path
        self.on_round = on_round
        self.progress = progress
        self.train_ids = [c.client_id for c in clients if not c.heldout]
        if not self.train_ids:
            raise ValueError("every client is held out: nothing would train")

    def run(self, resume: bool = False) -> SimulationResult:
        """Run all rounds (continuing from the checkpoint if ``resume``) and summarise."""
        start_round, history, server, states = 1, [], None, None
        if resume and self.checkpoint_path is not None and self.checkpoint_path.exists():
            ckpt = torch.load(self.checkpoint_path, weights_only=False)
            start_round, history = ckpt["round"] + 1, ckpt["history"]
            server, states = ckpt["server"], ckpt["client_states"]
        if server is None:
            server = self.algo.init_server()
            states = [self.algo.init_client(c) for c in self.clients]
            if self.algo.warmup_round:
                server, states, record = self._train_round(0, server, states, self.train_ids)
                history.append(record)
        bar = Progress(self.s.rounds, f"{self.algo.name}", enabled=self.progress)
        for r in range(start_round, self.s.rounds + 1):
            sampled = sample_clients(self.s.seed, r, self.train_ids, self.s.client_fraction)
            server, states, record = self._train_round(r, server, states, sampled)
            if r % self.s.eval_every == 0 or r == self.s.rounds:
                record["eval"] = self.evaluate_all(server, states, r)
            history.append(record)
            if self.on_round:
                self.on_round(record)
            if self.s.checkpoint_every and r % self.s.checkpoint_every == 0:
                self._save_checkpoint(r, server, states, history)
            info = f"loss {record['train_loss']:.3f}"
            if "eval" in record:
                info += f" | val {split_summary(record, 'val')['mean']:.3f}"
            bar.update(r, info)
        heldout = [c.client_id for c in self.clients if c.heldout]
        return SimulationResult(history, run_summary(history, heldout), server, states)

    def _train_round(self, r: int, server: Payload, states: list[Payload], sampled: list[int]
                     ) -> tuple[Payload, list[Payload], Record]:
        t0 = time.perf_counter()
        bcast = self.algo.broadcast(server, r)
        updates: list[ClientUpdate] = []
        bytes_down = 0
        for k in sampled:
            ctx = RoundContext(r, k, torch_generator(self.s.seed, r, k), self.device)
            message = self.algo.for_client(bcast, k)
            bytes_down += payload_nbytes(message)
            update = self.algo.local_update(message, states[k], self.clients[k], ctx)
            states[k] = clone_payload(update.state, "cpu") if self.device.type != "cpu" else update.state
            updates.append(update)
        server = self.algo.aggregate(server, updates, r)
        losses = [u.metrics.get("train_loss", float("nan")) for u in updates]
        record: Record = {
            "round": r,
            "clients": sampled,
            "train_loss": float(np.nanmean(losses)) if not np.all(np.isnan(losses)) else float("nan"),
            "bytes_down": bytes_down,
            "bytes_up": sum(payload_nbytes(u.upload) for u in updates),
            "seconds": time.perf_counter() - t0,
        }
        return server, states, record

    def evaluate_all(self, server: Payload, states: list[Payload], r: int) -> dict[str, list[int]]:
        """Evaluate every client's personal model; lists indexed by client id."""
        bcast = self.algo.broadcast(server, r)
        ev: dict[str, list[int]] = {"val_correct": [], "val_n": [], "test_correct": [], "test_n": []}
        for c in self.clients:
            ctx = RoundContext(r, c.client_id, torch_generator(self.s.seed, r, c.client_id, 0xE7A1), self.device)
            res = evaluate_client(self.algo, self.algo.for_client(bcast, c.client_id), states[c.client_id], c, ctx)
            for key in ev:
                ev[key].append(res[key])
        return ev

    def _save_checkpoint(self, r: int, server: Payload, states: list[Payload], history: list[Record]) -> None:
        assert self.checkpoint_path is not None, "checkpoint_every > 0 needs a checkpoint path"
        tmp = self.checkpoint_path.with_suffix(".tmp")
        torch.save({"round": r, "server": server, "client_states": states, "history": history}, tmp)
        tmp.replace(self.checkpoint_path)
