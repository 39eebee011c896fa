"""The metrics file holds one line per round of the history, warm-up round included."""

from __future__ import annotations

import json

from support import SMALL, tiny_config

from pfedkit.runs.experiment import simulate_config


def test_metrics_file_equals_the_history_warmup_round_included(tmp_path):
    cfg = tiny_config(*SMALL, "algorithm=pfedgm", "train.rounds=2")
    result = simulate_config(cfg, out_dir=tmp_path, progress=False)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in lines] == [r["round"] for r in result.history] == [0, 1, 2]
