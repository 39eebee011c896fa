"""What an engine tells the world: run start, the end of every round, run end.

An engine drives rounds through the algorithm protocol and calls its callbacks; checkpoints, the
progress line and the metrics file are callbacks, so an engine knows none of them. A callback
may read the state it is handed but must not change it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pfedkit.core.payload import Payload
from pfedkit.engines.checkpoint_file import read_checkpoint, write_checkpoint
from pfedkit.engines.report import Record


@dataclass
class EngineState:
    """Everything a run needs to continue after round ``round``: the server state, every
    client's personal state and the records so far."""

    round: int
    server: Payload
    client_states: list[Payload]
    history: list[Record]


class Callback:
    """Base class: every hook is a no-op; override the ones you need."""

    def on_run_start(self, algorithm: str, total_rounds: int, start_round: int) -> None:
        """Before the first round this run executes (``start_round`` > 1 when resuming)."""

    def on_round_end(self, record: Record, state: EngineState) -> None:
        """After round ``record["round"]`` (and its evaluation, if any) completed."""

    def on_run_end(self, history: list[Record], summary: dict[str, Any]) -> None:
        """After the last round, with the whole history and the protocol summary."""


class Checkpointer(Callback):
    """Saves the `EngineState` to ``path`` every ``every`` rounds, so `load` +
    ``Simulator.run(resume_from=...)`` replays an uninterrupted run exactly.

    The file is written atomically with a SHA-256 checksum (`pfedkit.engines.checkpoint_file`);
    ``meta`` (e.g. the resolved config and the partition hash) is stored beside the state, so a
    resume can refuse a changed run (`read`).
    """

    def __init__(self, path: Path, every: int, meta: dict[str, Any] | None = None) -> None:
        if every < 1:
            raise ValueError(f"checkpoint every {every} rounds: must be >= 1")
        self.path, self.every, self.meta = Path(path), every, dict(meta or {})

    def on_round_end(self, record: Record, state: EngineState) -> None:
        if state.round % self.every == 0:
            write_checkpoint(self.path, {"round": state.round, "server": state.server,
                                         "client_states": state.client_states, "history": state.history,
                                         "meta": self.meta})

    @staticmethod
    def read(path: Path) -> tuple[EngineState, dict[str, Any]]:
        """(state, meta) saved at ``path``, verified; ConfigError naming the file if it is damaged."""
        ckpt = read_checkpoint(path)
        state = EngineState(ckpt["round"], ckpt["server"], ckpt["client_states"], ckpt["history"])
        return state, ckpt.get("meta", {})

    @staticmethod
    def load(path: Path) -> EngineState | None:
        """The state saved at ``path`` (verified), or None when there is no checkpoint."""
        if not Path(path).exists():
            return None
        return Checkpointer.read(path)[0]
