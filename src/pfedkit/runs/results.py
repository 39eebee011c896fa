"""The results folder: resolved config, per-round metrics (JSONL), summary JSON, curve PNG."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

import pfedkit
from pfedkit.core.errors import ConfigError
from pfedkit.engines.callbacks import Callback, EngineState
from pfedkit.engines.report import Record, eval_records, split_summary


def prepare_output_dir(path: Path, overwrite: bool, resume: bool) -> Path:
    """Create ``path``; refuse a non-empty existing folder unless ``overwrite`` or ``resume``
    (``overwrite`` deletes the previous result files at once; `OutputFolder` keeps them until
    the new run has produced output)."""
    check_output_dir(path, overwrite, resume)
    if overwrite and not resume and path.exists():
        for name in ("metrics.jsonl", "summary.json", "checkpoint.pt", "curve.png"):
            (path / name).unlink(missing_ok=True)
    path.mkdir(parents=True, exist_ok=True)
    return path


RESULT_FILES = frozenset({"config.yaml", "metrics.jsonl", "summary.json", "checkpoint.pt", ".checkpoint.pt.tmp",
                          "curve.png", "table.md", "curves.png", "partition.png", "samples_domains.png",
                          "samples_corruptions.png", ".metrics.jsonl.tmp"})
"""Names of the files pfedkit writes into a results folder (run, compare, partition --plot);
subfolders of a comparison (``<method>/seed<s>/``) hold the same files."""


def check_output_dir(path: Path, overwrite: bool, resume: bool) -> None:
    """Refuse, touching nothing, an output folder that the run may not use: one with results
    unless ``overwrite`` or ``resume``; with ``overwrite``, one that also holds files pfedkit
    did not write, or whose previous results an interrupted ``--overwrite`` left aside."""
    if overwrite and resume:
        raise ConfigError("--overwrite and --resume contradict each other; pass --resume to continue the "
                          "checkpoint, --overwrite to start over")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output {str(path)!r} is a file, not a folder; set output=... to a folder")
    has_results = path.exists() and any(path.iterdir())
    if overwrite and has_results and Path.cwd().resolve().is_relative_to(path.resolve()):
        raise ConfigError(f"--overwrite cannot replace {str(path)!r}: it contains the current directory; run from "
                          "elsewhere or set output=... to another folder")
    if has_results and not (overwrite or resume):
        raise ConfigError(f"output folder {str(path)!r} already has results; pass --overwrite or set output=...")
    aside = aside_path(path)
    if overwrite and aside.exists():
        raise ConfigError(f"{str(aside)!r} holds the results an interrupted --overwrite run moved aside; move it "
                          f"back to {str(path)!r} or delete it, then rerun")
    if overwrite and has_results:
        foreign = foreign_files(path)
        if foreign:
            raise ConfigError(f"--overwrite would replace {str(path)!r}, which also holds files pfedkit did not "
                              f"write ({', '.join(foreign)}); move them out or set output=... to another folder")


def aside_path(path: Path) -> Path:
    """Where ``--overwrite`` keeps the previous results until the new run has produced output."""
    path = Path(path).absolute()
    return path.with_name(f".{path.name}.replaced")


def foreign_files(path: Path, limit: int = 3) -> list[str]:
    """Up to ``limit`` files under ``path`` (relative paths) whose names pfedkit never writes."""
    found = []
    for f in sorted(path.rglob("*")):
        if not f.is_dir() and f.name not in RESULT_FILES:
            found.append(str(f.relative_to(path)))
            if len(found) == limit:
                break
    return found


def has_output(path: Path) -> bool:
    """Whether a run has written a round record under ``path`` (a non-empty metrics.jsonl)."""
    return any(f.stat().st_size > 0 for f in Path(path).rglob("metrics.jsonl"))


class OutputFolder:
    """A results folder claimed for one run or comparison, so that no old result is lost before
    the new run is known to work (use as a context manager; it yields the folder).

    The constructor checks the folder (`check_output_dir`) and touches nothing; validate config,
    data, partition and device before entering. Entering with ``overwrite`` moves an existing folder aside (`aside_path`, a sibling) and
    creates an empty one. The old results are deleted by `commit`: at the first round record
    (`commit_callback`), or when the block ends, successfully or not, with output written. If the
    block fails before any output, the new folder is removed and the old one moved back; a
    folder this object created is removed as well, so a failed start leaves nothing behind.
    """

    def __init__(self, path: Path, overwrite: bool = False, resume: bool = False) -> None:
        check_output_dir(path, overwrite, resume)
        self.given = Path(path)
        self.path, self.overwrite, self.resume = self.given.absolute(), overwrite, resume
        self.aside: Path | None = None
        self.created = False

    def __enter__(self) -> Path:
        if self.overwrite and self.path.exists() and any(self.path.iterdir()):
            self.aside = aside_path(self.path)
            os.replace(self.path, self.aside)
        self.created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        return self.given

    def commit(self) -> None:
        """Delete the previous results (idempotent)."""
        if self.aside is not None:
            shutil.rmtree(self.aside)
            self.aside = None

    def commit_callback(self) -> Callback:
        """An engine callback that commits once the first round record has been written (put it
        after `MetricsWriter`)."""
        return _CommitOnRecord(self)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc_type is None or has_output(self.path):
            self.commit()
            return
        if self.aside is not None or (self.created and not self.resume):
            shutil.rmtree(self.path, ignore_errors=True)
        if self.aside is not None:
            os.replace(self.aside, self.path)
            self.aside = None


class _CommitOnRecord(Callback):
    def __init__(self, folder: OutputFolder) -> None:
        self.folder = folder

    def on_round_end(self, record: Record, state: EngineState) -> None:
        self.folder.commit()


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
    """Engine callback that keeps ``folder/metrics.jsonl`` as one line per round of the history:
    a fresh run starts the file anew; a resumed run first rewrites it from the checkpoint's
    ``history`` (dropping rounds a crash recorded after the checkpoint); then each round's
    record is appended as the round ends. The file therefore equals an uninterrupted run's."""

    def __init__(self, folder: Path, history: list[Record] | None = None) -> None:
        self.folder = folder
        self.history = list(history or [])

    def on_run_start(self, algorithm: str, total_rounds: int, start_round: int) -> None:
        path = self.folder / "metrics.jsonl"
        tmp = self.folder / ".metrics.jsonl.tmp"
        tmp.write_text("".join(json.dumps(_jsonable(rec)) + "\n" for rec in self.history))
        os.replace(tmp, path)

    def on_round_end(self, record: Record, state: EngineState) -> None:
        append_record(self.folder, record)


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(_jsonable(obj), indent=2) + "\n")


def curve_of(histories: list[list[Record]]) -> tuple[list[int], list[float], list[float]]:
    """(rounds, mean test acc, mean val acc) averaged over runs (e.g. seeds) with equal schedules."""
    evals = [eval_records(h) for h in histories]
    rounds = [r["round"] for r in evals[0]]
    test = [sum(split_summary(e[i], "test")["mean"] for e in evals) / len(evals) for i in range(len(rounds))]
    val = [sum(split_summary(e[i], "val")["mean"] for e in evals) / len(evals) for i in range(len(rounds))]
    return rounds, test, val


LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def curve_style(i: int) -> dict[str, Any]:
    """Matplotlib style of the ``i``-th curve of a plot: colour ``i % 10`` of tab10, line style
    ``i // 10`` (solid, dashed, dotted, dash-dot) and marker ``i % 8``, so that the first 40
    curves differ in (colour, line style) and neighbours also differ in marker."""
    import matplotlib

    colour = matplotlib.colormaps["tab10"](i % 10)
    return {"color": colour, "ls": LINE_STYLES[(i // 10) % len(LINE_STYLES)], "marker": MARKERS[i % len(MARKERS)]}


def curves_figure(curves: dict[str, list[list[Record]]], title: str = "") -> Any:
    """A figure of client-mean accuracy in % per evaluated round, averaged over each label's runs:
    test on the left panel, validation (what selects the reported round) on the right, one
    `curve_style` per label (distinct for up to 40 labels) and one legend. Returns the Figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 1 if len(curves) <= 20 else 2
    fig, (test_ax, val_ax) = plt.subplots(1, 2, figsize=(11 + 1.5 * columns, 4.8), sharey=True, layout="constrained")
    for i, (label, histories) in enumerate(curves.items()):
        rounds, test, val = curve_of(histories)
        style = curve_style(i) | {"markevery": max(1, len(rounds) // 8), "ms": 4, "lw": 1.4}
        test_ax.plot(rounds, [100 * v for v in test], label=label, **style)
        val_ax.plot(rounds, [100 * v for v in val], **style)
    for ax, split in ((test_ax, "test"), (val_ax, "validation")):
        ax.set_title(f"{split} (client mean)", fontsize=10)
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
    test_ax.set_ylabel("client-mean accuracy (%)")
    fig.suptitle(title)
    fig.legend(*test_ax.get_legend_handles_labels(), fontsize=8, loc="outside right center", ncols=columns)
    return fig


def plot_curves(curves: dict[str, list[list[Record]]], path: Path, title: str = "") -> None:
    """Write `curves_figure` of ``curves`` (label -> its runs' histories) to ``path`` (PNG)."""
    import matplotlib.pyplot as plt

    fig = curves_figure(curves, title)
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
