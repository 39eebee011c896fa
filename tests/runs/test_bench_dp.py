"""``pfedkit bench dp`` on a tiny setting: the page (command first, accuracy by epsilon with the
epsilon spent) and the plot; unsupported methods refused before any work."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from pfedkit.cli.main import main
from pfedkit.runs.bench import dp
from pfedkit.runs.bench.suite import BenchOptions, Setting

pytest.importorskip("opacus")

TINY = Setting("tiny", "digits, 4 clients", ("data.num_clients=4", "data.max_samples=300", "model.cnn.width=8",
                                             "model.cnn.feature_dim=16", "train.rounds=1", "train.batch_size=16"))


def test_bench_dp_writes_the_table_and_the_plot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dp, "SETTINGS", [TINY])
    monkeypatch.setattr(dp, "EPSILONS", (3.0, math.inf))
    opts = BenchOptions(seeds=1, out=tmp_path, algos=("fedavg",), command="pfedkit bench dp --algos fedavg")
    assert dp.run(opts) == 0
    page = (tmp_path / "dp" / "tiny.md").read_text()
    assert page.splitlines()[2] == "Command: `pfedkit bench dp --algos fedavg`"
    row = next(line for line in page.splitlines() if line.startswith("| fedavg |"))
    assert "(spent 3.00)" in row or "(spent 2.9" in row
    assert "(no DP)" in row
    assert "| local (shares nothing: eps 0) |" in page
    assert (tmp_path / "dp" / "tiny" / "accuracy_vs_epsilon.png").stat().st_size > 0


def test_bench_dp_refuses_a_method_without_privacy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "dp", "--algos", "fedprox", "--out", str(tmp_path)]) == 2
    assert "does not support privacy" in capsys.readouterr().err
    assert not (tmp_path / "dp").exists()
