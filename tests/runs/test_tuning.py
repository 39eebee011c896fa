"""Learning-rate search: same grid for every method, chosen on validation data only."""

from __future__ import annotations

import dataclasses

from support import tiny_config

import pfedkit.runs.compare as compare
import pfedkit.runs.tuning as tuning


def test_lr_search_picks_best_validation_and_ignores_test(monkeypatch):
    cfg = tiny_config("train.rounds=1")
    seen_lrs, val = [], {}
    real = compare.simulate_config

    def spy(run_cfg, fed=None, **kw):
        seen_lrs.append((run_cfg.algorithm, run_cfg.train.lr, run_cfg.seed))
        res = real(run_cfg, fed=fed, **kw)
        val[run_cfg.algorithm, run_cfg.train.lr] = res.summary["selected"]["val"]["mean"]
        # a test accuracy that would flip the choice if the search read it
        res.summary["selected"]["test"]["mean"] = 1.0 - res.summary["selected"]["val"]["mean"]
        return res

    monkeypatch.setattr(compare, "simulate_config", spy)
    variants = {a: dataclasses.replace(cfg, algorithm=a) for a in ("fedavg", "local")}
    chosen = tuning.tune_learning_rates(variants, [0.001, 0.1, 0.5], log=lambda m: None)
    assert {(a, lr) for a, lr, _ in seen_lrs} == {(a, lr) for a in ("fedavg", "local") for lr in (0.001, 0.1, 0.5)}
    assert all(seed == tuning.TUNING_SEED for *_, seed in seen_lrs)
    for algo in ("fedavg", "local"):  # best validation accuracy, the smaller lr on ties
        best = max((0.001, 0.1, 0.5), key=lambda lr: (val[algo, lr], -lr))
        assert chosen[algo] == best


def test_bench_tune_lr_gives_each_variant_its_own_rate_and_says_so(tmp_path, monkeypatch):
    import pfedkit.runs.bench.suite as suite

    base = ["data.num_clients=4", "data.max_samples=400", "model.cnn.width=8", "model.cnn.feature_dim=16",
            "train.rounds=1", "train.batch_size=16"]
    setting = suite.Setting("tiny", "tiny", tuple(base))
    variants = [suite.Variant("a", "local"), suite.Variant("b", "fedavg")]
    picks = {"local": 0.5, "fedavg": 0.001}
    monkeypatch.setattr(suite, "tune_learning_rates",
                        lambda configs, lrs, log, workers: {label: picks[c.algorithm] for label, c in configs.items()})
    used = {}
    real = suite.run_variants

    def spy(configs, *args, **kw):
        used.update({label: c.train.lr for label, c in configs.items()})
        return real(configs, *args, **kw)

    monkeypatch.setattr(suite, "run_variants", spy)
    opts = suite.BenchOptions(seeds=1, out=tmp_path, tune_lr=(0.001, 0.5))
    suite.run_suite("t", [setting], variants, opts)
    assert used == {"a": 0.5, "b": 0.001}
    assert "a 0.5, b 0.001" in (tmp_path / "t" / "tiny.md").read_text()


def test_lr_search_in_two_worker_processes_equals_one_at_a_time():
    cfg = tiny_config("train.rounds=1")
    variants = {a: dataclasses.replace(cfg, algorithm=a) for a in ("fedavg", "local")}
    logs: dict[int, list[str]] = {1: [], 2: []}
    picks = {w: tuning.tune_learning_rates(variants, [0.01, 0.3], log=logs[w].append, workers=w) for w in (1, 2)}
    assert picks[1] == picks[2] and logs[1] == logs[2]  # the log lines carry every validation score
    assert all("test" not in line for line in logs[1])
