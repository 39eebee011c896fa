"""Learning-rate search: same grid for every method, chosen on validation data only."""

from __future__ import annotations

from support import tiny_config

import pfedkit.runs.tuning as tuning


def test_lr_search_picks_best_validation_and_ignores_test(monkeypatch):
    cfg = tiny_config("train.rounds=1")
    seen_lrs, val = [], {}
    real = tuning.simulate_config

    def spy(run_cfg, fed=None, **kw):
        seen_lrs.append((run_cfg.algorithm, run_cfg.train.lr, run_cfg.seed))
        res = real(run_cfg, fed=fed, **kw)
        val[run_cfg.algorithm, run_cfg.train.lr] = res.summary["selected"]["val"]["mean"]
        # a test accuracy that would flip the choice if the search read it
        res.summary["selected"]["test"]["mean"] = 1.0 - res.summary["selected"]["val"]["mean"]
        return res

    monkeypatch.setattr(tuning, "simulate_config", spy)
    chosen = tuning.tune_learning_rates(cfg, ["fedavg", "local"], [0.001, 0.1, 0.5], log=lambda m: None)
    assert {(a, lr) for a, lr, _ in seen_lrs} == {(a, lr) for a in ("fedavg", "local") for lr in (0.001, 0.1, 0.5)}
    assert all(seed == tuning.TUNING_SEED for *_, seed in seen_lrs)
    for algo in ("fedavg", "local"):  # best validation accuracy, the smaller lr on ties
        best = max((0.001, 0.1, 0.5), key=lambda lr: (val[algo, lr], -lr))
        assert chosen[algo] == best
