"""What an engine tells the world: run start, the end of every round, run end.

An engine drives rounds through the algorithm protocol and calls its callbacks; checkpoints, the
progress line and the metrics file are callbacks, so an engine knows none of them. A callback
may read the state it is handed but must not change it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pfedkit.core.payload import Payload
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
    """Saves the `EngineState` to ``path`` every ``every`` rounds (atomically: write, then rename),
    so `load` + ``Simulator.run(resume_from=...)`` replays an uninterrupted run exactly."""

    def __init__(self, path: Path, every: int) -> None:
        if every < 1:
            raise ValueError(f"checkpoint every {every} rounds: must be >= 1")
        self.path, self.every = Path(path), every

    def on_round_end(self, record: Record, state: EngineState) -> None:
        if state.round % self.every == 0:
            tmp = self.path.with_suffix(".tmp")
            torch.save({"round": state.round, "server": state.server, "client_states": state.client_states,
                        "history": state.history}, tmp)
            tmp.replace(self.path)

    @staticmethod
    def load(path: Path) -> EngineState | None:
        """The state saved at ``path``, or None when there is no checkpoint."""
        if not Path(path).exists():
            return None
        ckpt = torch.load(path, weights_only=False)
        return EngineState(ckpt["round"], ckpt["server"], ckpt["client_states"], ckpt["history"])
