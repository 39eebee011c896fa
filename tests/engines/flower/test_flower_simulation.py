"""``pfedkit run CONFIG engine=flower-sim``: Flower's Ray simulation gives the simulator's numbers.

The same tiny config (digits, 4 clients, a small CNN, pFedGM with its warm-up round, 2 rounds) runs
once in the in-process simulator and once in Flower's simulation runtime (Ray actors, one virtual
SuperNode per client). Every record and the summary are equal (bit for bit: the same operations
on the same tensors in the same order; only wall time differs), and the results folder has the
simulator's layout.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

pytest.importorskip("flwr")
pytest.importorskip("ray")

from flower_support import TINY, comparable, comparable_summary  # noqa: E402

from pfedkit.cli.main import main  # noqa: E402


def read_folder(folder: Path) -> tuple[list[dict], dict, dict]:
    history = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((folder / "summary.json").read_text())
    config = yaml.safe_load((folder / "config.yaml").read_text())
    return history, summary, config


def test_flower_simulation_equals_the_simulator_and_writes_the_same_folder(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLWR_TELEMETRY_ENABLED", "0")
    args = ["run", *TINY, "algorithm=pfedgm", "--quiet"]
    assert main([*args, f"output={tmp_path / 'sim'}"]) == 0
    assert main([*args, "engine=flower-sim", "flower.ray_cpus=2", "flower.round_timeout=300",
                 "flower.connect_timeout=300", f"output={tmp_path / 'flower'}"]) == 0
    sim, flower = tmp_path / "sim", tmp_path / "flower"
    assert sorted(p.name for p in flower.iterdir()) == sorted(p.name for p in sim.iterdir())
    (h_sim, s_sim, c_sim), (h_fl, s_fl, c_fl) = read_folder(sim), read_folder(flower)
    assert [r["round"] for r in h_fl] == [0, 1, 2]  # pFedGM's warm-up round, then two rounds
    assert comparable(h_fl) == comparable(h_sim)
    assert comparable_summary(s_fl) == comparable_summary(s_sim)
    assert c_fl["partition_hash"] == c_sim["partition_hash"] and c_fl["flower_runtime"] == "simulation"
    assert {k for k in c_fl if k not in ("flower_runtime",)} == set(c_sim)
    assert all(r["wire_bytes_up"] > 0 for r in h_fl)
