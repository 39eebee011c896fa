"""Comparison table: the ECE column beside unchanged accuracy columns."""

from __future__ import annotations

import json

import pytest
from support import SMALL, tiny_config

from pfedkit.runs.compare import ComparisonRun, comparison_table, run_comparison, write_comparison


def fake_summary(acc: float, ece: float | None) -> dict:
    split = {"mean": acc, "weighted": acc, "std": 0.1, "worst10": acc / 2}
    test = split | ({"ece": ece} if ece is not None else {})
    return {"selected_round": 1, "last_round": 1, "selected": {"val": split, "test": test},
            "last": {"val": split, "test": test}, "seconds_per_round": 0.5,
            "bytes_up_per_round": 1e6, "bytes_down_per_round": 2e6}


def cells(table: str, method: str) -> dict[str, str]:
    lines = table.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    row = next(line for line in lines if line.startswith(f"| {method} |"))
    return dict(zip(header, [c.strip() for c in row.strip("|").split("|")]))


def test_table_has_an_ece_column_with_mean_and_std_over_seeds():
    runs = [ComparisonRun("a", 0, fake_summary(0.5, 0.10), []), ComparisonRun("a", 1, fake_summary(0.7, 0.20), []),
            ComparisonRun("b", 0, fake_summary(0.6, None), [])]
    table = comparison_table(runs)
    header = [c.strip() for c in table.splitlines()[0].strip("|").split("|")]
    assert header == ["method", "test acc (val-sel.)", "weighted", "worst 10%", "std across clients",
                      "test acc (last)", "ECE % (test, val-sel.)", "s/round", "MB up/round", "MB down/round"]
    assert table.splitlines()[1] == "|" + "---|" * len(header)
    a = cells(table, "a")
    assert a["ECE % (test, val-sel.)"] == "15.00 ± 5.00"
    assert a["test acc (val-sel.)"] == "60.00 ± 10.00" and a["worst 10%"] == "30.00 ± 5.00"
    assert cells(table, "b")["ECE % (test, val-sel.)"] == "n/a"  # summary without ECE


def test_comparison_reports_ece_in_table_and_summary(tmp_path):
    cfg = tiny_config(*SMALL, "train.rounds=1")
    runs = run_comparison(cfg, ["local"], [0], tmp_path, progress=False, log=lambda m: None)
    ece = runs[0].summary["selected"]["test"]["ece"]
    assert 0.0 <= ece <= 1.0
    table = write_comparison(runs, tmp_path, "t", "cmd")
    assert cells(table, "local")["ECE % (test, val-sel.)"] == f"{100 * ece:.2f} ± 0.00"
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved[0]["summary"]["selected"]["test"]["ece"] == pytest.approx(ece)
    assert "ECE" in (tmp_path / "table.md").read_text()
