"""Small federations and one-call runs for tests (tiny data, 1-3 rounds)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from pfedkit.algorithms.protocol import Algorithm, RoundContext
from pfedkit.algorithms.registry import build_algorithm, resolve_hparams
from pfedkit.core.config import RunConfig, load_config
from pfedkit.core.seeding import torch_generator
from pfedkit.data.setup import FederatedData, build_federated_data
from pfedkit.engines.callbacks import Callback, EngineState
from pfedkit.engines.simulate import SimulationResult, SimulationSettings, Simulator
from pfedkit.runs.experiment import seeded_model


def tiny_config(*overrides: str) -> RunConfig:
    """digits, 6 clients, Dirichlet 0.5, small CNN, 2 rounds, batch 16."""
    base = ["data.num_clients=6", "partition.alpha=0.5", "model.cnn.width=8", "model.cnn.feature_dim=16",
            "train.rounds=2", "train.batch_size=16", "train.lr=0.1"]
    return load_config(None, base + list(overrides))


SMALL = ("data.num_clients=4", "data.max_samples=400")
"""Overrides for the smallest federation the per-method tests use (4 clients, 400 digits)."""


def small_federation(*overrides: str) -> tuple[RunConfig, FederatedData]:
    """(config, federation) of ``tiny_config(*SMALL, *overrides)``."""
    cfg = tiny_config(*SMALL, *overrides)
    return cfg, tiny_fed(cfg)


def tiny_fed(cfg: RunConfig | None = None) -> FederatedData:
    cfg = cfg or tiny_config()
    return build_federated_data(cfg.data, cfg.partition, cfg.seed)


def make_algorithm(name: str, fed: FederatedData, hp: dict[str, Any] | None = None,
                   cfg: RunConfig | None = None) -> Algorithm:
    """A fresh algorithm around a freshly seeded tiny model."""
    cfg = cfg or tiny_config()
    model = seeded_model(cfg, fed.input_shape, fed.num_classes)
    return build_algorithm(name, model, resolve_hparams(name, hp), cfg.train, fed.num_classes, cfg.seed,
                           privacy=cfg.privacy)


def run_sim(name: str, fed: FederatedData | None = None, hp: dict[str, Any] | None = None,
            rounds: int = 2, fraction: float = 1.0, seed: int = 0, cfg: RunConfig | None = None) -> SimulationResult:
    """Simulate ``name`` on a tiny federation without writing files."""
    cfg = cfg or tiny_config()
    fed = fed or tiny_fed(cfg)
    algo = make_algorithm(name, fed, hp, cfg)
    settings = SimulationSettings(seed=seed, rounds=rounds, client_fraction=fraction)
    return Simulator(algo, fed.clients, settings).run()


def ctx(round: int = 1, client: int = 0, seed: int = 0) -> RoundContext:
    """A RoundContext with a seeded generator."""
    return RoundContext(round, client, torch_generator(seed, round, client))


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Largest absolute difference over the shared floating keys of two payloads."""
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a if k in b)


def stop_after_round(sim: Simulator, round: int) -> None:
    """Run ``sim`` and interrupt it (an exception, as a crash would) once round ``round`` ended."""

    class Stop(Exception):
        pass

    class StopAt(Callback):
        def on_round_end(self, record: dict[str, Any], state: EngineState) -> None:
            if record["round"] == round:
                raise Stop

    sim.callbacks.append(StopAt())
    with pytest.raises(Stop):
        sim.run()
