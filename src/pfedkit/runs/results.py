"""The results folder: resolved config, per-round metrics (JSONL), summary JSON, curve PNG."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

import yaml

import pfedkit
from pfedkit.core.errors import ConfigError
from pfedkit.engines.callbacks import Callback, EngineState
from pfedkit.engines.report import Record, eval_records, split_summary


def prepare_output_dir(path: Path, overwrite: bool, resume: bool) -> Path:
    """Create ``path``; refuse a non-empty existing folder unless ``overwrite`` or ``resume``."""
    if path.exists() and any(path.iterdir()) and not (overwrite or resume):
        raise ConfigError(f"output folder {str(path)!r} already has results; pass --overwrite or set output=...")
    if overwrite and not resume and path.exists():
        for name in ("metrics.jsonl", "summary.json", "checkpoint.pt", "curve.png"):
            (path / name).unlink(missing_ok=True)
    path.mkdir(parents=True, exist_ok=True)
    return path


def git_commit() -> str:
    """The current git commit of the working directory ('unknown' outside a repository)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_config(path: Path, config: dict[str, Any]) -> None:
    """Write the resolved config with the package version and git commit beside it."""
    meta = {"pfedkit_version": pfedkit.__version__, "git_commit": git_commit()}
    (path / "config.yaml").write_text(yaml.safe_dump({**config, "_provenance": meta}, sort_keys=False))


def append_record(path: Path, record: Record) -> None:
    """Append one round's record to ``metrics.jsonl``."""
    with open(path / "metrics.jsonl", "a") as f:
        f.write(json.dumps(_jsonable(record)) + "\n")


class MetricsWriter(Callback):
    """Engine callback that keeps ``folder/metrics.jsonl`` as one line per round: appended as
    each round ends (a fresh run starts the file anew), rewritten from the whole history at the
    end of a resumed run, so the file equals an uninterrupted run's."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.resumed = False

    def on_run_start(self, algorithm: str, total_rounds: int, start_round: int) -> None:
        self.resumed = start_round > 1
        if not self.resumed:
            (self.folder / "metrics.jsonl").unlink(missing_ok=True)

    def on_round_end(self, record: Record, state: EngineState) -> None:
        append_record(self.folder, record)

    def on_run_end(self, history: list[Record], summary: dict[str, Any]) -> None:
        if self.resumed:
            (self.folder / "metrics.jsonl").unlink(missing_ok=True)
            for rec in history:
                append_record(self.folder, rec)


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(_jsonable(obj), indent=2) + "\n")


def curve_of(histories: list[list[Record]]) -> tuple[list[int], list[float], list[float]]:
    """(rounds, mean test acc, mean val acc) averaged over runs (e.g. seeds) with equal schedules."""
    evals = [eval_records(h) for h in histories]
    rounds = [r["round"] for r in evals[0]]
    test = [sum(split_summary(e[i], "test")["mean"] for e in evals) / len(evals) for i in range(len(rounds))]
    val = [sum(split_summary(e[i], "val")["mean"] for e in evals) / len(evals) for i in range(len(rounds))]
    return rounds, test, val


def plot_curves(curves: dict[str, list[list[Record]]], path: Path, title: str = "") -> None:
    """Client-mean test (solid) and val (dashed) accuracy per evaluated round, one colour per
    label (up to 20 distinct), averaged over the label's runs; the legend sits right of the axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    palette = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20")
    for i, (label, histories) in enumerate(curves.items()):
        rounds, test, val = curve_of(histories)
        color = palette(i % palette.N)
        ax.plot(rounds, test, color=color, label=label)
        ax.plot(rounds, val, color=color, ls="--", alpha=0.6)
    ax.set_xlabel("round")
    ax.set_ylabel("client-mean accuracy (solid: test, dashed: val)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if hasattr(obj, "item"):
        return obj.item()
    return obj
