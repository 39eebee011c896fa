"""privacy.* over Flower messages: each node keeps its own ledger in its Context state and reports
its spend in the reply's metrics; the server's records equal the simulator's."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("flwr")
pytest.importorskip("opacus")

from test_flower_loopback import config_for, loopback  # noqa: E402

from pfedkit.runs.experiment import simulate_config  # noqa: E402
from pfedkit.runs.flower_app import serve  # noqa: E402


@pytest.mark.parametrize("name", ["fedavg", "pfedgm"])
def test_private_run_on_flower_spends_what_the_simulator_spends(name: str) -> None:
    cfg = config_for(name, "privacy.epsilon=2")
    sim = simulate_config(cfg, progress=False)
    fl = serve(loopback(cfg), cfg, None, runtime="loopback", progress=False)
    assert [r["privacy"] for r in fl.history] == [r["privacy"] for r in sim.history]
    assert fl.summary["privacy"] == sim.summary["privacy"] and 0.95 * 2 <= fl.summary["privacy"]["epsilon"] <= 2
    for key, value in sim.server.items():
        assert torch.equal(fl.server[key], value), key
