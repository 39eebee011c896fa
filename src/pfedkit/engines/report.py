"""Round selection and summaries of a run's history, as the evaluation protocol defines them.

The reported round is the one with the best client-mean **validation** accuracy (earliest on
ties); the last round is reported beside it. Test accuracy never influences the selection.
Beside accuracy, each split reports its expected calibration error (15 equal-width bins over the
max predicted probability), pooled over the clients' predictions.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pfedkit.core.calibration import CalibrationBins
from pfedkit.core.metrics import summarize

Record = dict[str, Any]


def eval_records(history: list[Record]) -> list[Record]:
    """The history entries that carry an evaluation of every client."""
    return [r for r in history if "eval" in r]


def split_summary(record: Record, split: str, clients: list[int] | None = None) -> dict[str, float]:
    """Client-mean, weighted, std and worst-10 % accuracy and the pooled ECE of one split at one
    evaluated round, over ``clients`` (default: all).

    ``ece`` pools the predictions of the clients (`pooled_calibration`); it is NaN when the
    record holds no pooled bins for that set of clients.
    """
    ev = record["eval"]
    correct, total = np.asarray(ev[f"{split}_correct"]), np.asarray(ev[f"{split}_n"])
    if clients is not None:
        correct, total = correct[clients], total[clients]
    bins = pooled_calibration(record, split, clients)
    return summarize(correct, total).as_dict() | {"ece": bins.ece() if bins is not None else math.nan}


def pooled_calibration(record: Record, split: str, clients: list[int] | None = None) -> CalibrationBins | None:
    """The calibration bins of one split pooled over ``clients`` (default: all) at an evaluated round.

    The record pools bins over all clients (``<split>_calib``) and, when some are held out, over
    the held-out ones (``<split>_calib_heldout``, with their ids); so the bins exist for all
    clients, the held-out clients and the others (all less the held-out). Any other set of
    clients, or a record without bins (written before they existed), gives None.
    """
    ev = record["eval"]
    if f"{split}_calib" not in ev:
        return None
    everyone = CalibrationBins.from_dict(ev[f"{split}_calib"])
    n_clients = len(ev[f"{split}_n"])
    wanted = set(range(n_clients)) if clients is None else {int(k) for k in clients}
    held = ev.get(f"{split}_calib_heldout")
    held_ids = set(held["clients"]) if held is not None else set()
    if wanted == set(range(n_clients)):
        return everyone
    if held is not None and wanted == held_ids:
        return CalibrationBins.from_dict(held)
    if held is not None and wanted == set(range(n_clients)) - held_ids:
        return everyone.without(CalibrationBins.from_dict(held))
    return None


RARE_MAX = 9
"""A class a client holds 1..RARE_MAX training samples of is *rare* for that client."""


def accuracy_by_class_count(record: Record, bands: list[tuple[int, int]], clients: list[int] | None = None
                            ) -> list[tuple[float, float]] | None:
    """Test accuracy pooled over the (client, class) pairs whose training count n_kc lies in each
    band ``lo <= n_kc <= hi``: one (accuracy, test sample count) per band, accuracy NaN when the
    count is 0. None when the record has no per-class entries
    (`pfedkit.engines.evaluation.CLASS_KEYS`)."""
    ev = record["eval"]
    if "train_class_n" not in ev:
        return None
    train = np.asarray(ev["train_class_n"], dtype=np.int64)  # (K, C)
    correct = np.asarray(ev["test_class_correct"], dtype=np.float64)
    total = np.asarray(ev["test_class_n"], dtype=np.float64)
    if clients is not None:
        train, correct, total = train[clients], correct[clients], total[clients]
    out = []
    for lo, hi in bands:
        mask = (train >= lo) & (train <= hi)
        n = float(total[mask].sum())
        out.append((float(correct[mask].sum() / n) if n else math.nan, n))
    return out


def scarce_class_accuracy(record: Record, clients: list[int] | None = None) -> dict[str, float] | None:
    """Test accuracy pooled over the (client, class) pairs where the client has few training
    samples of the class: ``rare`` (1..`RARE_MAX`) and ``unseen`` (0), with their test sample
    counts ``rare_n`` and ``unseen_n`` (accuracy NaN when the count is 0). None when the record
    has no per-class entries (`pfedkit.engines.evaluation.CLASS_KEYS`)."""
    bands = accuracy_by_class_count(record, [(1, RARE_MAX), (0, 0)], clients)
    if bands is None:
        return None
    (rare, rare_n), (unseen, unseen_n) = bands
    return {"rare": rare, "rare_n": rare_n, "unseen": unseen, "unseen_n": unseen_n}


def select_round(history: list[Record], clients: list[int] | None = None) -> Record:
    """The evaluated round with the best client-mean val accuracy (earliest on ties)."""
    evals = eval_records(history)
    if not evals:
        raise ValueError("history has no evaluated round")
    scores = [split_summary(r, "val", clients)["mean"] for r in evals]
    scores = [-np.inf if np.isnan(s) else s for s in scores]
    return evals[int(np.argmax(scores))]


def privacy_entry(updates: list[Any]) -> Record:
    """``{"privacy": {"epsilon", "delta"}}`` from this round's client updates when they report the
    privacy they have spent (``metrics["epsilon"]``, ``metrics["delta"]``; privacy.* on): the
    largest epsilon among them. Else ``{}``."""
    spent = [u.metrics for u in updates if "epsilon" in u.metrics]
    if not spent:
        return {}
    return {"privacy": {"epsilon": max(float(m["epsilon"]) for m in spent),
                        "delta": max(float(m.get("delta", 0.0)) for m in spent)}}


def carry_privacy(record: Record, history: list[Record]) -> None:
    """Make ``record["privacy"]`` the spend of the whole federation so far: epsilon is the max over
    every client, so over this round's and every earlier record's (each client's own spend only
    grows); a round without private updates repeats the last spend. Changes ``record`` in place."""
    earlier = [r["privacy"] for r in history if "privacy" in r]
    if not earlier:
        return
    now = record.get("privacy", earlier[-1])
    record["privacy"] = {"epsilon": max(now["epsilon"], earlier[-1]["epsilon"]),
                         "delta": max(now["delta"], earlier[-1]["delta"])}


def run_summary(history: list[Record], heldout: list[int] | None = None) -> dict[str, Any]:
    """Summary of a run: val-selected and last-round metrics for val and test, cost per round.

    With held-out clients, the selection uses the training clients' validation accuracy and the
    held-out clients are summarised separately under ``"heldout"``. Every split summary carries
    ``"ece"``, pooled over the same clients as its accuracies (`split_summary`).
    """
    evals = eval_records(history)
    n_clients = len(evals[-1]["eval"]["val_n"])
    heldout = sorted(heldout or [])
    participants = [k for k in range(n_clients) if k not in set(heldout)]
    best, last = select_round(history, participants), evals[-1]
    out: dict[str, Any] = {"selected_round": best["round"], "last_round": last["round"]}
    for tag, rec in (("selected", best), ("last", last)):
        out[tag] = {s: split_summary(rec, s, participants) for s in ("val", "test")}
        scarce = scarce_class_accuracy(rec, participants)
        if scarce is not None:
            out[tag]["scarce"] = scarce
        if heldout:
            out[tag]["heldout"] = {s: split_summary(rec, s, heldout) for s in ("val", "test")}
    trained = [r for r in history if r["round"] >= 1]
    out["seconds_per_round"] = float(np.mean([r["seconds"] for r in trained])) if trained else 0.0
    out["bytes_up_per_round"] = float(np.mean([r["bytes_up"] for r in trained])) if trained else 0.0
    out["bytes_down_per_round"] = float(np.mean([r["bytes_down"] for r in trained])) if trained else 0.0
    spent = [r["privacy"] for r in history if "privacy" in r]
    if spent:  # privacy.*: (epsilon, delta) spent by the end, max over clients
        out["privacy"] = dict(spent[-1])
    return out
