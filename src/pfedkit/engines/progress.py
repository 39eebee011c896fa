"""A dependency-free progress line for long loops (rewritten in place on a terminal)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from pfedkit.engines.callbacks import Callback, EngineState
from pfedkit.engines.report import Record, split_summary


class Progress:
    """Prints ``label i/n | info | s/step | eta`` to stderr; silent when ``enabled`` is False."""

    def __init__(self, total: int, label: str, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.total, self.label, self.enabled = total, label, enabled
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def update(self, done: int, info: str = "") -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        rate = elapsed / max(done, 1)
        eta = rate * (self.total - done)
        line = f"{self.label} {done}/{self.total} | {info} | {rate:.2f} s/round | eta {eta:.0f} s"
        if self.tty:
            self.stream.write("\r" + line.ljust(100))
            if done >= self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


class ProgressBar(Callback):
    """The engine callback that prints a `Progress` line per round: train loss, and the mean
    validation accuracy on evaluation rounds."""

    def __init__(self, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.enabled, self.stream = enabled, stream
        self.bar: Progress | None = None

    def on_run_start(self, algorithm: str, total_rounds: int, start_round: int) -> None:
        self.bar = Progress(total_rounds, algorithm, enabled=self.enabled, stream=self.stream)

    def on_round_end(self, record: Record, state: EngineState) -> None:
        assert self.bar is not None, "on_run_start was not called"
        info = f"loss {record['train_loss']:.3f}"
        if "eval" in record:
            info += f" | val {split_summary(record, 'val')['mean']:.3f}"
        self.bar.update(record["round"], info)
