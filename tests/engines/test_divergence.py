"""Divergence guard: non-finite losses or tensors stop the run, naming round, client and quantity;
the last good checkpoint stays loadable."""

from __future__ import annotations

import json
import math

import pytest
import torch
from support import tiny_config, tiny_fed

from pfedkit.algorithms.methods.fedavg import FedAvg
from pfedkit.algorithms.protocol import ClientUpdate
from pfedkit.algorithms.registry import resolve_hparams
from pfedkit.cli.main import main
from pfedkit.engines.callbacks import Checkpointer
from pfedkit.engines.divergence import DivergenceError, check_round
from pfedkit.engines.simulate import SimulationSettings, Simulator
from pfedkit.runs import experiment
from pfedkit.runs.experiment import seeded_model

NAN, INF = float("nan"), float("inf")


class DivergesAtRound3(FedAvg):
    """FedAvg whose client 1 blows up in round 3: NaN loss, NaN weights (as a too large lr does)."""

    def local_update(self, broadcast, state, data, ctx):
        update = super().local_update(broadcast, state, data, ctx)
        if ctx.round == 3 and ctx.client_id == 1:
            update.upload = {k: t * NAN if t.is_floating_point() else t for k, t in update.upload.items()}
            update.metrics["train_loss"] = NAN
        return update


def diverging_algorithm(cfg, fed):
    model = seeded_model(cfg, fed.input_shape, fed.num_classes)
    return DivergesAtRound3(model, resolve_hparams("fedavg", None), cfg.train, fed.num_classes, cfg.seed)


class Lr:
    """Stands in for an algorithm in `check_round`: ``train.lr`` and the model's keys ("w", "head")."""

    def __init__(self, lr: float) -> None:
        self.train = type("T", (), {"lr": lr})()
        self.model = type("M", (), {"state_dict": lambda _: {"w": None, "head": None}})()


def update(client: int, loss: float = 0.5, upload: float = 1.0, state: float = 1.0) -> ClientUpdate:
    return ClientUpdate({"w": torch.full((3,), upload), "n": torch.ones(2, dtype=torch.long)}, 1.0,
                        {"head": torch.full((2,), state)}, {"train_loss": loss}, client_id=client)


def test_nan_loss_with_nan_weights_names_round_client_loss_and_lr():
    with pytest.raises(DivergenceError) as err:
        check_round(Lr(5.0), 3, [update(0), update(7, loss=NAN, upload=NAN)], {"w": torch.zeros(3)})
    assert str(err.value) == "round 3, client 7: train_loss is nan; lower train.lr (now 5) or check the data"


def test_infinite_loss_is_divergence_even_with_finite_weights():
    with pytest.raises(DivergenceError, match="round 2, client 4: train_loss is inf"):
        check_round(Lr(0.1), 2, [update(4, loss=INF)], {"w": torch.zeros(3)})


@pytest.mark.parametrize("where, kw", [("upload 'w'", {"upload": INF}), ("personal state 'head'", {"state": NAN})])
def test_non_finite_tensor_with_finite_loss_names_the_tensor(where, kw):
    with pytest.raises(DivergenceError, match=f"round 1, client 2: {where} has non-finite values"):
        check_round(Lr(0.1), 1, [update(2, **kw)], {"w": torch.zeros(3)})


def test_non_finite_server_state_is_divergence():
    server = {"w": torch.zeros(3), "gm.cov": torch.tensor([[1.0, NAN], [0.0, 1.0]], dtype=torch.float64)}
    with pytest.raises(DivergenceError, match="round 4: aggregated server state 'gm.cov' has non-finite values"):
        check_round(Lr(0.1), 4, [update(0)], server)


def test_infinity_is_allowed_in_statistics_but_not_in_weights():
    """pFedGM's filter holds an infinite uncertainty until its first observation."""
    check_round(Lr(0.1), 0, [update(0)], {"w": torch.zeros(3), "gm.filter.cov_uncertainty": torch.tensor(INF)})
    with pytest.raises(DivergenceError, match="round 0: aggregated server state 'w' has non-finite values"):
        check_round(Lr(0.1), 0, [update(0)], {"w": torch.tensor([0.0, INF])})


def test_nan_loss_without_training_is_no_value_not_divergence():
    """train_epochs returns NaN for a client with nothing to train; its weights stay finite."""
    check_round(Lr(0.1), 1, [update(0, loss=NAN)], {"w": torch.zeros(3)})


def test_metrics_that_are_not_losses_are_not_checked():
    """A privacy accountant may report epsilon = inf for a tiny noise multiplier: not divergence."""
    up = update(0)
    up.metrics["epsilon"] = INF
    check_round(Lr(0.1), 1, [up], {"w": torch.zeros(3)})
    up.metrics["personal_loss"] = INF
    with pytest.raises(DivergenceError, match="round 1, client 0: personal_loss is inf"):
        check_round(Lr(0.1), 1, [up], {"w": torch.zeros(3)})


def test_simulator_stops_at_the_diverged_round_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = tiny_config("train.rounds=5")
    fed = tiny_fed(cfg)
    ckpt = tmp_path / "checkpoint.pt"
    sim = Simulator(diverging_algorithm(cfg, fed), fed.clients, SimulationSettings(rounds=5),
                    [Checkpointer(ckpt, every=1)])
    with pytest.raises(DivergenceError, match=r"^round 3, client 1: train_loss is nan; lower train.lr \(now 0.1\)"):
        sim.run()
    state = Checkpointer.load(ckpt)
    assert state.round == 2 and [r["round"] for r in state.history] == [1, 2]
    assert all(bool(torch.isfinite(t).all()) for t in state.server.values() if t.is_floating_point())


def test_cli_divergence_is_one_line_exit_2_and_leaves_round_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(experiment, "build_algorithm",
                        lambda name, model, hp, train, num_classes, seed, **_: DivergesAtRound3(
                            model, hp, train, num_classes, seed))
    out = tmp_path / "run"
    code = main(["run", "data.num_clients=6", "partition.alpha=0.5", "model.cnn.width=8", "model.cnn.feature_dim=16",
                 "train.batch_size=16", "train.lr=0.1", "train.rounds=5", "checkpoint_every=1", f"output={out}",
                 "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err == "pfedkit: error: round 3, client 1: train_loss is nan; lower train.lr (now 0.1) or check the data"
    state, meta = Checkpointer.read(out / "checkpoint.pt")
    assert state.round == 2 and meta["fingerprint"]["train.lr"] == 0.1
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in lines] == [1, 2] and all(math.isfinite(r["train_loss"]) for r in lines)
