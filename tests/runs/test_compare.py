"""Comparison table (the ECE column, methods declared identical to another) and plot."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.colors import to_hex
from support import SMALL, tiny_config

from pfedkit.runs.compare import ComparisonRun, comparison_table, run_comparison, write_comparison
from pfedkit.runs.results import MARKERS, curve_of, curves_figure


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


def test_rare_and_unseen_class_columns_when_every_run_has_them():
    runs = [ComparisonRun("a", k, fake_summary(0.5, 0.1), []) for k in (0, 1)]
    assert "rare classes" not in comparison_table(runs)
    for run, (rare, unseen) in zip(runs, [(0.4, float("nan")), (0.6, 0.2)]):
        run.summary["selected"]["scarce"] = {"rare": rare, "rare_n": 5.0, "unseen": unseen, "unseen_n": 1.0}
    a = cells(comparison_table(runs), "a")
    assert a["rare classes"] == "50.00 ± 10.00" and a["unseen classes"] == "20.00 ± 0.00"  # NaN seed left out


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


def without_time(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in rec.items() if k != "seconds"} for rec in history]


def test_declared_equivalences_hold_bit_for_bit_and_the_table_says_so():
    cfg = tiny_config(*SMALL, "train.rounds=2", "hp.fedprox.mu=0")
    runs = run_comparison(cfg, ["fedavg", "fedbn", "fedprox"], [0], None, progress=False, log=lambda m: None)
    fedavg, fedbn, fedprox = runs
    assert fedbn.same_as == "fedavg (the model has no BatchNorm layers)"
    assert fedprox.same_as == "fedavg (hp.fedprox.mu=0: no proximal term)"
    assert fedavg.same_as is None
    assert without_time(fedbn.history) == without_time(fedavg.history) == without_time(fedprox.history)
    table = comparison_table(runs)
    assert "| fedbn = fedavg (the model has no BatchNorm layers) |" in table
    assert "| fedprox = fedavg (hp.fedprox.mu=0: no proximal term) |" in table
    assert "| fedavg |" in table


def test_no_equivalence_is_declared_where_the_methods_differ():
    cfg = tiny_config(*SMALL, "train.rounds=1", "model.cnn.norm=batch", "hp.fedprox.mu=0.01")
    runs = run_comparison(cfg, ["fedavg", "fedbn", "fedprox"], [0], None, progress=False, log=lambda m: None)
    assert [r.same_as for r in runs] == [None, None, None]
    assert without_time(runs[1].history) != without_time(runs[0].history)  # BatchNorm stays personal: differs
    assert "=" not in "".join(line.split("|")[1] for line in comparison_table(runs).splitlines()[2:])


def fake_history(rng: np.random.Generator, rounds: int = 6) -> list[dict]:
    evals = lambda: {"correct": rng.integers(0, 11, 4).tolist(), "n": [10] * 4}  # noqa: E731
    out = []
    for r in range(1, rounds + 1):
        val, test = evals(), evals()
        out.append({"round": r, "eval": {"val_correct": val["correct"], "val_n": val["n"],
                                         "test_correct": test["correct"], "test_n": test["n"]}})
    return out


def test_comparison_plot_tells_24_methods_apart_in_percent_without_doubling_lines():
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    curves = {f"m{i}": [fake_history(rng), fake_history(rng)] for i in range(24)}
    fig = curves_figure(curves, "t")
    test_ax, val_ax = fig.axes
    try:
        assert len(test_ax.lines) == len(val_ax.lines) == 24  # one line per method and panel
        looks = {(to_hex(line.get_color()), line.get_linestyle()) for line in test_ax.lines}
        assert len(looks) == 24  # colour and line style never both repeat
        assert {line.get_marker() for line in test_ax.lines[:8]} == set(MARKERS)
        rounds, test, val = curve_of(curves["m5"])
        assert list(test_ax.lines[5].get_ydata()) == pytest.approx([100 * v for v in test])
        assert list(val_ax.lines[5].get_ydata()) == pytest.approx([100 * v for v in val])
        assert "%" in test_ax.get_ylabel()
        assert [t.get_text() for t in fig.legends[0].get_texts()] == list(curves)
    finally:
        plt.close(fig)
