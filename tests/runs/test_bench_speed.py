"""``pfedkit bench speed``: serial and batched rows, the floor, the page, the plot and the JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pfedkit.cli.main import main
from pfedkit.runs.bench import speed
from pfedkit.runs.bench.suite import BenchOptions

TINY = ("data.dataset=digits", "data.max_samples=300", "partition.alpha=0.5", "partition.min_size=5",
        "model.cnn.width=4", "model.cnn.feature_dim=8", "train.batch_size=10", "train.rounds=2")


def test_measure_times_both_paths_and_the_floor(tmp_path: Path) -> None:
    rows, floors = speed.measure(list(TINY), ["fedavg", "pfedgm"], [4])
    assert [(r.algorithm, r.mode) for r in rows] == [("fedavg", "serial"), ("fedavg", "batched"),
                                                      ("pfedgm", "serial"), ("pfedgm", "batched")]
    assert all(r.seconds_per_round > 0 and r.peak_memory_mb > 0 and r.eval_seconds > 0 for r in rows)
    assert rows[0].samples_per_round == rows[1].samples_per_round > 0
    assert floors[4][0] > 0 and floors[4][1] > 0
    assert all(r.cpu_seconds_per_round > 0 for r in rows)
    page = speed.table(rows, floors)
    assert "| fedavg | 4 |" in page and "| pfedgm | 4 |" in page and "Floor" in page
    speed.plot(rows, floors, tmp_path / "speed.png", "tiny")
    assert (tmp_path / "speed.png").stat().st_size > 1000


def test_bench_speed_writes_its_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(speed.SCALES, "cpu", TINY)
    code = speed.run(BenchOptions(out=tmp_path, settings=("3",), algos=("fedavg",)))
    assert code == 0
    data = json.loads((tmp_path / "speed" / "cpu.json").read_text())
    assert {r["mode"] for r in data["rows"]} == {"serial", "batched"} and "3" in data["floors"]
    assert "batched speed-up" in (tmp_path / "speed" / "cpu.md").read_text()
    assert (tmp_path / "speed" / "cpu.png").exists()


def test_bench_speed_refuses_a_setting_that_is_not_a_client_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "speed", "--settings", "many"]) == 2
    assert "bench speed takes client counts" in capsys.readouterr().err
