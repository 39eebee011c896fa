from support import run_sim


def test_fedavg_runs_on_tiny_federation():
    res = run_sim("fedavg", rounds=1)
    assert res.summary["last"]["test"]["mean"] >= 0.0
