"""Evaluate one client's personal model on its val and test splits."""

from __future__ import annotations

import torch

from pfedkit.algorithms.protocol import Algorithm, RoundContext
from pfedkit.algorithms.toolkit.training import predict_in_batches
from pfedkit.core.payload import Payload
from pfedkit.data.client_data import ClientData


def evaluate_client(
    algo: Algorithm, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext
) -> dict[str, int]:
    """Correct counts and sizes of the client's val and test splits under its personal model.

    Returns ``{"val_correct", "val_n", "test_correct", "test_n"}``. The personal predictor is
    built once (it may fine-tune or fit statistics on the *training* split only).
    """
    predictor = algo.personal_predictor(broadcast, state, data, ctx)
    out: dict[str, int] = {}
    with torch.no_grad():
        for split in ("val", "test"):
            x, y = data.split(split)
            if len(y) == 0:
                correct = 0
            else:
                correct = int((predict_in_batches(predictor, x).argmax(dim=1) == y).sum())
            out[f"{split}_correct"] = correct
            out[f"{split}_n"] = int(len(y))
    return out
