"""A dependency-free progress line for long loops (rewritten in place on a terminal)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


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
