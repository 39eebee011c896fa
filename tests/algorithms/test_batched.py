"""The batched path (clients of a round trained together, stacked) equals the serial path.

Stated tolerance (docs/performance.md): after whole runs on a small federation with clients of
unequal size (batch 10, so every client has its own number of steps and a partial last batch),
partial participation and SGD with momentum, every server and client tensor agrees with the
serial run within |a - b| <= 1e-5 + 1e-4 |b|, every recorded training loss within 1e-5
relative, and every evaluation count exactly.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from support import SMALL, make_algorithm, tiny_config, tiny_fed

from pfedkit.algorithms.registry import build_algorithm
from pfedkit.algorithms.toolkit.batched_training import ClientRows, build_schedule, train_together
from pfedkit.algorithms.toolkit.training import batches
from pfedkit.core.config import load_config
from pfedkit.core.errors import ConfigError
from pfedkit.data.client_data import pack_training_splits
from pfedkit.engines.simulate import SimulationResult, SimulationSettings, Simulator
from pfedkit.runs.experiment import seeded_model

RTOL, ATOL = 1e-4, 1e-5

CASES = {
    "fedavg": (), "fedprox": ("hp.fedprox.mu=0.5",), "local": (), "fedper": (), "fedrep": (),
    "fedbabu": (), "ditto": ("hp.ditto.lam=0.5",), "pfedgm": (),
    "pfedgm-linear-head": ("hp.pfedgm.navigator=false",), "pfedgm-anchor-coords": ("hp.pfedgm.navigator_coords=anchors",),
    "pfedgm-navigator-step": ("hp.pfedgm.navigator_step=20",),
    "pfedgm-cov-cv": ("hp.pfedgm.cov_weight=cross_validated",),
    "fedavg-adam": ("train.optimizer=adam", "train.lr=0.01", "train.weight_decay=0.01"),
}


def _run(name: str, overrides: tuple[str, ...], mode: str, rounds: int = 2, batch_clients: int = 0
         ) -> SimulationResult:
    algorithm = name.split("-")[0]
    cfg = tiny_config(*SMALL, "train.batch_size=10", "train.momentum=0.9", *overrides)
    fed = tiny_fed(cfg)
    algo = build_algorithm(algorithm, seeded_model(cfg, fed.input_shape, fed.num_classes), cfg.hparams(algorithm),
                           cfg.train, fed.num_classes, cfg.seed)
    settings = SimulationSettings(rounds=rounds, client_fraction=0.75, batched=mode, batch_clients=batch_clients)
    sim = Simulator(algo, fed.clients, settings)
    assert sim.batched == (mode == "always")
    return sim.run()


def _assert_close(a: SimulationResult, b: SimulationResult) -> None:
    for ra, rb in zip(a.history, b.history, strict=True):
        assert ra["clients"] == rb["clients"]
        assert ra["train_loss"] == pytest.approx(rb["train_loss"], rel=1e-5, nan_ok=True)
        assert ra.get("eval", {}).get("test_correct") == rb.get("eval", {}).get("test_correct")
    payloads = [(a.server, b.server)] + list(zip(a.client_states, b.client_states, strict=True))
    for pa, pb in payloads:
        assert sorted(pa) == sorted(pb)
        for key in pa:
            assert torch.allclose(pa[key].double(), pb[key].double(), rtol=RTOL, atol=ATOL), key


@pytest.mark.parametrize("case", list(CASES))
def test_batched_run_equals_serial_run(case: str) -> None:
    _assert_close(_run(case, CASES[case], "always"), _run(case, CASES[case], "never"))


def test_clients_in_groups_equal_clients_all_at_once() -> None:
    whole, grouped = _run("fedrep", (), "always"), _run("fedrep", (), "always", batch_clients=2)
    _assert_close(grouped, whole)


def test_schedule_draws_the_serial_batches_and_masks_finished_clients() -> None:
    counts, batch, epochs = [23, 10, 4], 10, 2  # 3, 1 and 1 steps per epoch; partial last batches
    starts = [0, 23, 33]
    schedule = build_schedule(starts, counts, batch, epochs, [torch.Generator().manual_seed(k) for k in range(3)],
                              torch.device("cpu"))
    assert schedule.steps == [6, 2, 2] and schedule.active == [3, 3, 1, 1, 1, 1]
    for k, (start, n) in enumerate(zip(starts, counts)):
        gen = torch.Generator().manual_seed(k)
        serial = [idx for _ in range(epochs) for idx in batches(n, batch, gen)]
        assert len(serial) == schedule.steps[k]
        for s, idx in enumerate(serial):
            real = schedule.weight[s, k] > 0
            assert int(real.sum()) == len(idx)
            assert torch.equal(schedule.rows[s, k][real], idx + start)
            assert set(schedule.rows[s, k][~real].tolist()) <= set(range(start, start + n))  # padding: own rows


def test_train_together_leaves_a_client_without_data_untouched() -> None:
    torch.manual_seed(0)
    w = torch.randn(2, 3, 4)  # two clients' (3, 4) linear maps
    rows = ClientRows.of_tensors([torch.randn(7, 4), torch.zeros(0, 4)], [torch.randint(0, 3, (7,)),
                                                                           torch.zeros(0, dtype=torch.int64)])

    def loss(t, x, y, w_):
        return (torch.nn.functional.cross_entropy(x @ t["w"].T, y, reduction="none") * w_).sum() / w_.sum()

    cfg = tiny_config("train.batch_size=3")
    trained, losses = train_together(loss, {"w": w}, rows, [torch.Generator().manual_seed(k) for k in range(2)],
                                     cfg.train)
    assert not torch.equal(trained["w"][0], w[0]) and torch.equal(trained["w"][1], w[1])
    assert torch.isfinite(losses[0]) and torch.isnan(losses[1])


def test_packed_training_splits_are_views_with_the_same_values() -> None:
    fed = tiny_fed(tiny_config(*SMALL))
    before = [c.x_train.clone() for c in fed.clients]
    pack = pack_training_splits(fed.clients)
    assert pack_training_splits(fed.clients) is pack  # packed once per run
    for c, x in zip(fed.clients, before):
        assert torch.equal(c.x_train, x) and c.x_train.data_ptr() == pack.x[pack.starts[c.client_id]].data_ptr()
    view = dataclasses.replace(fed.clients[0], x_train=torch.zeros(fed.clients[0].num_train, 3))
    assert view.train_pack is None  # new inputs (e.g. frozen features) are not in the pack


def test_batched_on_refuses_batch_norm_and_unsupported_methods_auto_falls_back() -> None:
    cfg = tiny_config(*SMALL, "model.cnn.norm=batch")
    fed = tiny_fed(cfg)
    with pytest.raises(ConfigError, match="simulate.batched=always: the model has BatchNorm2d layers"):
        Simulator(make_algorithm("fedavg", fed, cfg=cfg), fed.clients, SimulationSettings(batched="always"))
    assert not Simulator(make_algorithm("fedavg", fed, cfg=cfg), fed.clients, SimulationSettings(batched="auto")).batched
    plain = tiny_fed(tiny_config(*SMALL))
    with pytest.raises(ConfigError, match="fedpac has no batched local update"):
        Simulator(make_algorithm("fedpac", plain), plain.clients, SimulationSettings(batched="always"))
    assert not Simulator(make_algorithm("fedavg", plain), plain.clients, SimulationSettings(batched="auto")).batched


def test_simulate_batched_is_validated() -> None:
    assert load_config(None, []).simulate.batched == "auto"
    assert load_config(None, ["simulate.batched=never"]).simulate.batched == "never"
    with pytest.raises(ConfigError, match="simulate.batched='sometimes' is not allowed; choose one of auto, always"):
        load_config(None, ["simulate.batched=sometimes"])
