"""Evaluate one client's personal model on its val and test splits."""

from __future__ import annotations

import torch

from pfedkit.algorithms.protocol import Algorithm, RoundContext
from pfedkit.algorithms.toolkit.training import predict_in_batches
from pfedkit.core.calibration import DEFAULT_BINS, CalibrationBins
from pfedkit.core.payload import Payload
from pfedkit.data.client_data import ClientData

SPLITS = ("val", "test")
CLASS_KEYS = ("test_class_correct", "test_class_n", "train_class_n")
"""Per-class entries of an evaluation (see `evaluate_client`)."""


def evaluate_client(
    algo: Algorithm, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext,
    n_bins: int = DEFAULT_BINS,
) -> dict[str, int | CalibrationBins | list[int]]:
    """Correct counts, sizes and calibration bins of the client's val and test splits under its
    personal model.

    Returns ``{"val_correct", "val_n", "val_calib", "test_correct", "test_n", "test_calib"}``:
    ``*_correct`` and ``*_n`` are ints, ``*_calib`` a `CalibrationBins` (``n_bins`` equal-width
    bins over the max predicted probability; empty for an empty split), which add up across
    clients; and, per class (lists of ``algo.num_classes`` ints), ``test_class_correct``,
    ``test_class_n`` and ``train_class_n`` (the client's training samples of each class), from
    which a report tells how the client does on the classes it has few or no examples of. The personal predictor is built once (it may fine-tune or fit statistics on the
    *training* split only).

    A predictor returns logits or log-probabilities; either way the softmax of its output is the
    predictive distribution (for log-probabilities, softmax(log p) = p / sum(p) = p). The
    prediction is the argmax of the raw output, for accuracy and calibration alike.
    """
    predictor = algo.personal_predictor(broadcast, state, data, ctx)
    out: dict[str, int | CalibrationBins | list[int]] = {}
    with torch.no_grad():
        for split in SPLITS:
            x, y = data.split(split)
            bins = CalibrationBins(n_bins)
            if len(y) == 0:
                correct = 0
            else:
                logits = predict_in_batches(predictor, x)
                hit = logits.argmax(dim=1) == y
                correct = int(hit.sum())
                confidence = torch.softmax(logits.cpu().double(), dim=1).amax(dim=1)  # float64 off-device (MPS)
                bins.add_confidences(confidence, hit)
            out[f"{split}_correct"] = correct
            out[f"{split}_n"] = int(len(y))
            out[f"{split}_calib"] = bins
            if split == "test":
                right = y[hit] if len(y) else y
                out["test_class_correct"] = torch.bincount(right, minlength=algo.num_classes).tolist()
                out["test_class_n"] = torch.bincount(y, minlength=algo.num_classes).tolist()
    out["train_class_n"] = data.class_counts("train").long().tolist()
    return out
