"""Simulator: determinism, resume, evaluation of every client, no test data in training/selection."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from support import make_algorithm, max_abs_diff, stop_after_round, tiny_config, tiny_fed

from pfedkit.data.setup import FederatedData
from pfedkit.engines.callbacks import Checkpointer
from pfedkit.engines.report import pooled_calibration, run_summary, split_summary
from pfedkit.engines.simulate import SimulationSettings, Simulator, sample_clients


def strip_time(history):
    return [{k: v for k, v in rec.items() if k != "seconds"} for rec in history]


def simulate(name: str, fed: FederatedData, rounds: int = 3, fraction: float = 1.0, **kw):
    algo = make_algorithm(name, fed)
    return Simulator(algo, fed.clients, SimulationSettings(seed=0, rounds=rounds, client_fraction=fraction),
                     **kw).run()


@pytest.mark.parametrize("name", ["fedavg", "fedavg_ft"])
def test_same_seed_gives_identical_metrics_and_weights(name):
    a = simulate(name, tiny_fed(), fraction=0.5)
    b = simulate(name, tiny_fed(), fraction=0.5)
    assert strip_time(a.history) == strip_time(b.history)
    assert max_abs_diff(a.server, b.server) == 0.0


def test_different_seed_changes_the_run():
    fed = tiny_fed()
    a = simulate("fedavg", fed)
    algo = make_algorithm("fedavg", fed)
    b = Simulator(algo, fed.clients, SimulationSettings(seed=1, rounds=3)).run()
    assert max_abs_diff(a.server, b.server) > 0.0


def test_resume_after_a_stop_equals_uninterrupted_run(tmp_path):
    full = simulate("fedavg", tiny_fed(), rounds=4, fraction=0.5)
    ckpt = tmp_path / "checkpoint.pt"
    fed = tiny_fed()
    settings = SimulationSettings(seed=0, rounds=4, client_fraction=0.5)
    stop_after_round(Simulator(make_algorithm("fedavg", fed), fed.clients, settings, [Checkpointer(ckpt, every=2)]), 3)
    assert Checkpointer.load(ckpt).round == 2
    fed2 = tiny_fed()  # a fresh process: new data objects, new workspace model
    resumed = Simulator(make_algorithm("fedavg", fed2), fed2.clients, settings).run(Checkpointer.load(ckpt))
    assert strip_time(resumed.history) == strip_time(full.history)
    assert max_abs_diff(resumed.server, full.server) == 0.0
    assert resumed.summary["selected"] == full.summary["selected"]


def test_every_client_is_evaluated_every_evaluation_round():
    fed = tiny_fed()
    res = simulate("fedavg", fed, rounds=3, fraction=0.34)
    for rec in res.history:
        assert len(rec["clients"]) == 2  # partial participation
        assert rec["eval"]["val_n"] == [len(c.y_val) for c in fed.clients]
        assert rec["eval"]["test_n"] == [len(c.y_test) for c in fed.clients]
        assert all(n > 0 for n in rec["eval"]["test_n"])


def test_partial_participation_samples_the_requested_share():
    ids = list(range(10))
    chosen = sample_clients(0, 1, ids, 0.3)
    assert len(chosen) == 3 and chosen == sorted(chosen)
    assert chosen == sample_clients(0, 1, ids, 0.3)
    assert any(sample_clients(0, r, ids, 0.3) != chosen for r in range(2, 6))


@pytest.mark.parametrize("name", ["fedavg", "fedavg_ft", "local"])
def test_test_samples_never_influence_training_or_round_selection(name):
    """Replace every client's test set with noise and wrong labels: training losses, validation
    metrics, the selected round and the weights must not change."""
    clean = simulate(name, tiny_fed(), rounds=3)
    fed = tiny_fed()
    gen = torch.Generator().manual_seed(123)
    for c in fed.clients:
        c.x_test = torch.rand(c.x_test.shape, generator=gen)
        c.y_test = (c.y_test + 1) % fed.num_classes
    poisoned = simulate(name, fed, rounds=3)
    for a, b in zip(clean.history, poisoned.history):
        assert a["train_loss"] == b["train_loss"]
        assert a["eval"]["val_correct"] == b["eval"]["val_correct"]
    assert clean.summary["selected_round"] == poisoned.summary["selected_round"]
    assert max_abs_diff(clean.server, poisoned.server) == 0.0
    assert clean.summary["selected"]["test"] != poisoned.summary["selected"]["test"]


def test_client_splits_are_disjoint_and_cover_the_partition():
    cfg = tiny_config()
    fed = tiny_fed(cfg)
    for c, idx in zip(fed.clients, fed.partition.client_indices):
        assert len(c.y_train) + len(c.y_val) + len(c.y_test) == len(idx)
        # the same image never appears in two splits of a client
        rows = lambda x: {tuple(r.flatten().tolist()) for r in x}  # noqa: E731
        assert not (rows(c.x_train) & rows(c.x_test)) or len(rows(c.x_train) | rows(c.x_test)) < len(idx)


def test_every_evaluation_carries_calibration_and_the_summary_reports_ece():
    fed = tiny_fed()
    res = simulate("fedavg", fed, rounds=2)
    for rec in res.history:
        ev = rec["eval"]
        for split in ("val", "test"):
            calib = ev[f"{split}_calib"]
            assert set(calib) == {"counts", "conf_sum", "correct_sum"}
            assert all(len(v) == 15 for v in calib.values())
            assert sum(calib["counts"]) == sum(ev[f"{split}_n"])
            assert sum(calib["correct_sum"]) == sum(ev[f"{split}_correct"])
            assert all(type(v) is int for v in calib["counts"]) and all(type(v) is float for v in calib["conf_sum"])
            eces = ev[f"{split}_ece"]
            assert len(eces) == len(fed.clients)
            assert all((math.isnan(e) if n == 0 else 0.0 <= e <= 1.0) for e, n in zip(eces, ev[f"{split}_n"]))
        assert not any(k.endswith("_calib_heldout") for k in ev)
        json.dumps(ev)  # plain lists
    for tag in ("selected", "last"):
        for split in ("val", "test"):
            assert 0.0 <= res.summary[tag][split]["ece"] <= 1.0
    last = res.history[-1]["eval"]["test_calib"]
    assert res.summary["last"]["test"]["ece"] == pytest.approx(
        sum(abs(c - k) for c, k in zip(last["conf_sum"], last["correct_sum"])) / sum(last["counts"]))


def test_ece_of_held_out_and_training_clients_pools_each_group():
    cfg = tiny_config("partition.num_heldout=2")
    fed = tiny_fed(cfg)
    heldout = [c.client_id for c in fed.clients if c.heldout]
    assert len(heldout) == 2
    res = simulate("fedavg", fed, rounds=2)
    rec = res.history[-1]
    ev = rec["eval"]
    assert ev["test_calib_heldout"]["clients"] == heldout
    trained = [k for k in range(len(fed.clients)) if k not in heldout]
    by_group = {tuple(g): pooled_calibration(rec, "test", g) for g in (trained, heldout)}
    everyone = pooled_calibration(rec, "test")
    np.testing.assert_array_equal(by_group[tuple(trained)].counts + by_group[tuple(heldout)].counts, everyone.counts)
    assert by_group[tuple(heldout)].total == sum(ev["test_n"][k] for k in heldout)
    assert pooled_calibration(rec, "test", trained[:1]) is None  # no pooled bins for that subset
    assert math.isnan(split_summary(rec, "test", trained[:1])["ece"])
    last = res.summary["last"]
    assert last["test"]["ece"] == pytest.approx(by_group[tuple(trained)].ece())
    assert last["heldout"]["test"]["ece"] == pytest.approx(by_group[tuple(heldout)].ece())
    assert 0.0 <= last["heldout"]["test"]["ece"] <= 1.0


def test_summary_of_records_without_calibration_reports_nan_ece():
    """Histories written before calibration existed (e.g. an old checkpoint) still summarise."""
    res = simulate("fedavg", tiny_fed(), rounds=1)
    old = [{**r, "eval": {k: v for k, v in r["eval"].items() if "calib" not in k and "ece" not in k}}
           for r in res.history]
    summary = run_summary(old)
    assert math.isnan(summary["selected"]["test"]["ece"])
    assert summary["selected"]["test"]["mean"] == res.summary["selected"]["test"]["mean"]
