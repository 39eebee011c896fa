"""Learning-rate search on validation data: every method gets the same grid and budget."""

from __future__ import annotations

import dataclasses
from typing import Callable

from pfedkit.core.config import RunConfig
from pfedkit.runs.compare import run_variants

TUNING_SEED = 1000
"""Seed of the tuning run: its partition and initial weights differ from the reported seeds'."""


def with_lr(cfg: RunConfig, lr: float) -> RunConfig:
    """``cfg`` with ``train.lr = lr`` (a copy; ``cfg`` is unchanged)."""
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=lr))


def tune_learning_rates(variants: dict[str, RunConfig], lrs: list[float], log: Callable[[str], None] = print,
                        workers: int = 1) -> dict[str, float]:
    """Per variant label, the lr in ``lrs`` with the best val-selected client-mean **val**
    accuracy on one tuning run (seed ``TUNING_SEED``, same rounds as the comparison); the smaller
    lr on ties. Test accuracy is never read. The len(variants) x len(lrs) runs share the worker
    pool of a comparison (``workers`` processes), with the same results as one at a time."""
    grid = {(label, lr): with_lr(cfg, lr) for label, cfg in variants.items() for lr in lrs}
    log(f"lr search: {len(grid)} runs on tuning seed {TUNING_SEED} ({len(variants)} methods x {len(lrs)} lrs)")
    # the comparison's log line reports test accuracy: the search must not show or use it
    runs = run_variants({f"{label} lr={lr:g}": cfg for (label, lr), cfg in grid.items()}, [TUNING_SEED], None,
                        progress=False, log=lambda m: None, workers=workers)
    val = {key: run.summary["selected"]["val"]["mean"] for key, run in zip(grid, runs)}
    chosen = {}
    for label in variants:
        chosen[label] = max(lrs, key=lambda lr: (val[label, lr], -lr))
        log(f"lr search {label}: " + ", ".join(f"{lr:g}->{100 * val[label, lr]:.1f}" for lr in lrs)
            + f" => {chosen[label]:g}")
    return chosen
