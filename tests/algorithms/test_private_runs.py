"""Private runs end to end: epsilon per round (non-decreasing, within the target), the summary,
valid statistics for pFedGM's server, and one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from support import ctx, make_algorithm, run_sim, tiny_config, tiny_fed

from pfedkit.algorithms.methods.pfedgm import FILTER, STATS
from pfedkit.algorithms.registry import check_privacy_support
from pfedkit.algorithms.toolkit.privacy import HISTORY
from pfedkit.cli.main import main
from pfedkit.core.errors import ConfigError
from pfedkit.engines.simulate import use_batched
from pfedkit.stats import ClassStats, GlobalFilterState
from pfedkit.stats.privacy_accounting import epsilon_spent

pytest.importorskip("opacus")

TARGET = 2.0


def spent(history: list[dict]) -> list[float]:
    return [r["privacy"]["epsilon"] for r in history]


@pytest.mark.parametrize("name", ["fedavg", "fedrep", "pfedfda", "pfedgm"])
def test_private_run_reports_epsilon_per_round_within_the_target(name: str) -> None:
    """Every client takes part in every round, so the calibrated noise spends the whole budget:
    epsilon grows round by round and ends at the target (not above, and not far below)."""
    cfg = tiny_config(f"privacy.epsilon={TARGET}", "data.num_clients=4", "data.max_samples=300", "train.rounds=2")
    res = run_sim(name, tiny_fed(cfg), cfg=cfg, rounds=2)
    eps = spent(res.history)
    assert len(eps) == len(res.history) == (3 if name == "pfedgm" else 2)
    assert all(a < b for a, b in zip(eps, eps[1:]))
    assert 0.95 * TARGET <= eps[-1] <= TARGET
    assert res.summary["privacy"] == {"epsilon": eps[-1], "delta": cfg.privacy.delta}
    assert all(HISTORY in s for s in res.client_states)


def test_local_shares_nothing_and_spends_nothing() -> None:
    cfg = tiny_config(f"privacy.epsilon={TARGET}", "data.num_clients=4", "data.max_samples=300")
    res = run_sim("local", tiny_fed(cfg), cfg=cfg, rounds=2)
    assert spent(res.history) == [0.0, 0.0] and res.summary["privacy"]["epsilon"] == 0.0


def test_partial_participation_keeps_a_running_max() -> None:
    """Half the clients per round: the record's epsilon is the largest any client has spent so
    far, which is what the clients' own ledgers say at the end; fewer rounds, less spent."""
    cfg = tiny_config(f"privacy.epsilon={TARGET}", "data.num_clients=4", "data.max_samples=300", "train.rounds=3")
    res = run_sim("fedavg", tiny_fed(cfg), cfg=cfg, rounds=3, fraction=0.5)
    eps = spent(res.history)
    assert all(a <= b for a, b in zip(eps, eps[1:])) and 0 < eps[-1] <= TARGET
    own = [epsilon_spent(s[HISTORY].tolist(), cfg.privacy.delta) if HISTORY in s else 0.0 for s in res.client_states]
    assert eps[-1] == pytest.approx(max(own))
    rounds_in = [sum(k in r["clients"] for r in res.history) for k in range(4)]
    for a in range(4):
        for b in range(4):
            if rounds_in[a] < rounds_in[b]:
                assert own[a] < own[b]


def test_pfedgm_server_covariance_is_positive_definite_with_noise() -> None:
    """Noise on pFedGM's statistics (sigma 1, about 15 records per class and client): the
    server's filtered covariance is positive definite after the warm-up and a training round."""
    cfg = tiny_config("privacy.noise_multiplier=1", "data.num_clients=4", "data.max_samples=800")
    res = run_sim("pfedgm", tiny_fed(cfg), cfg=cfg, rounds=1)
    state = GlobalFilterState.from_payload(res.server, FILTER)
    assert bool(state.initialized.any())
    assert float(torch.linalg.eigvalsh(state.cov).min()) > 0
    assert res.summary["privacy"]["epsilon"] > 0


def test_pfedgm_upload_is_noised_and_valid() -> None:
    cfg = tiny_config("privacy.noise_multiplier=5", "data.num_clients=4", "data.max_samples=300")
    fed = tiny_fed(cfg)
    algo = make_algorithm("pfedgm", fed, cfg=cfg)
    update = algo.local_update(algo.broadcast(algo.init_server(), 0), algo.init_client(fed.clients[0]),
                               fed.clients[0], ctx(round=0))
    stats = ClassStats.from_payload(update.upload, STATS)
    assert not torch.equal(stats.counts, fed.clients[0].class_counts("train").double())
    assert float(torch.linalg.eigvalsh(stats.scatter).min()) > 0
    assert update.weight == pytest.approx(max(stats.total, 1.0))
    assert update.metrics["epsilon"] > 0


def test_unsupported_method_is_refused_in_one_line() -> None:
    cfg = tiny_config("privacy.epsilon=1")
    with pytest.raises(ConfigError, match="'fedprox' does not support privacy") as err:
        check_privacy_support("fedprox", cfg.privacy)
    assert "\n" not in str(err.value) and "pfedgm" in str(err.value)
    with pytest.raises(ConfigError, match="does not support privacy"):
        make_algorithm("fedbn", tiny_fed(cfg), cfg=cfg)
    check_privacy_support("fedprox", tiny_config().privacy)  # privacy off: anything goes


def test_cli_refuses_unsupported_method_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["run", "algorithm=ditto", "privacy.epsilon=3", f"output={out}", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not support privacy" in err[0]
    assert not out.exists()


def test_epsilon_and_noise_multiplier_together_are_refused() -> None:
    with pytest.raises(ConfigError, match="set one of them"):
        tiny_config("privacy.epsilon=1", "privacy.noise_multiplier=2")


def test_batched_training_is_refused_with_privacy() -> None:
    """The batched path trains clients together without their ledgers: privacy keeps them serial."""
    cfg = tiny_config("privacy.epsilon=1", "data.num_clients=4", "data.max_samples=300")
    algo = make_algorithm("fedavg", tiny_fed(cfg), cfg=cfg)
    assert "privacy" in (algo.batching_blocker() or "")
    assert not use_batched(algo, "auto", torch.device("cuda"))
    with pytest.raises(ConfigError, match="privacy"):
        use_batched(algo, "always", torch.device("cpu"))


def test_cli_run_reports_the_epsilon_spent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["run", "data.num_clients=4", "data.max_samples=300", "model.cnn.width=8", "model.cnn.feature_dim=16",
                 "train.rounds=1", "privacy.epsilon=4", f"output={out}", "--quiet"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "privacy: epsilon 3.9" in line or "privacy: epsilon 4.00" in line
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["privacy"]["delta"] == 1e-5 and record["privacy"]["epsilon"] <= 4
    assert json.loads((out / "summary.json").read_text())["privacy"] == record["privacy"]
