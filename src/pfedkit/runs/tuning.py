"""Learning-rate search on validation data: every method gets the same grid and budget."""

from __future__ import annotations

import dataclasses
from typing import Callable

from pfedkit.core.config import RunConfig
from pfedkit.data.setup import build_federated_data, load_pool
from pfedkit.runs.experiment import simulate_config

TUNING_SEED = 1000
"""Seed of the tuning run: its partition and initial weights differ from the reported seeds'."""


def tune_learning_rates(cfg: RunConfig, algorithms: list[str], lrs: list[float],
                        log: Callable[[str], None] = print) -> dict[str, float]:
    """For each algorithm, the lr in ``lrs`` with the best val-selected client-mean **val**
    accuracy on one tuning run (seed ``TUNING_SEED``, same rounds as the comparison).
    Test accuracy is never read."""
    fed = build_federated_data(cfg.data, cfg.partition, TUNING_SEED, pool=load_pool(cfg.data, cfg.seed))
    chosen = {}
    for algo in algorithms:
        scores = {}
        for lr in lrs:
            run_cfg = dataclasses.replace(cfg, algorithm=algo, seed=TUNING_SEED,
                                          train=dataclasses.replace(cfg.train, lr=lr))
            res = simulate_config(run_cfg, fed=fed, progress=False)
            scores[lr] = res.summary["selected"]["val"]["mean"]
        chosen[algo] = max(lrs, key=lambda lr: (scores[lr], -lr))
        log(f"lr search {algo}: " + ", ".join(f"{lr:g}->{100 * s:.1f}" for lr, s in scores.items())
            + f" => {chosen[algo]:g}")
    return chosen
