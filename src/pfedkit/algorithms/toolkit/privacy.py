"""A client's privacy ledger: what one local update releases under ``privacy.*``, and the
(epsilon, delta) the client has spent so far (docs/privacy.md).

A method that supports privacy (``supports_privacy = True``) opens a ledger at the start of
``local_update`` (`ledger_for`) and routes every release through it:

* ``train_epochs(..., private=ledger.dp_sgd())`` trains with DP-SGD (`toolkit.dp_sgd`);
* ``ledger.class_stats(z, y, C, generator)`` releases noised class statistics
  (`pfedkit.stats.private_stats`);
* ``ledger.weight(...)`` is the upload's aggregation weight (it must not reveal n);
* ``ledger.state(state)`` and ``ledger.metrics()`` carry the spend: the client's history of
  releases lives in its personal state under ``dp.history`` (so a resumed run, or a Flower node,
  keeps counting), and each update reports ``epsilon`` and ``delta`` in its metrics.

With privacy off the ledger is inactive: no DP-SGD, exact statistics, weight n, state and
metrics unchanged, so a method calls it the same way either way.

The noise multiplier is the configured one, or the smallest one that keeps a client that takes
part in every round within the target epsilon (`noise_for`): calibrated per client, because its
sample rate depends on its number of training records.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from pfedkit.algorithms.protocol import PRIVACY_PREFIX, Algorithm
from pfedkit.algorithms.toolkit.dp_sgd import DPSGD, Slot
from pfedkit.core.config import PrivacyConfig
from pfedkit.core.payload import Payload
from pfedkit.stats.privacy_accounting import Mechanism, epsilon_spent, noise_multiplier_for
from pfedkit.stats.private_stats import noisy_class_stats
from pfedkit.stats.sufficient import ClassStats, class_stats

HISTORY = PRIVACY_PREFIX + "history"
"""(m, 3) float64 personal state: rows (noise multiplier, sample rate, steps) of every release so far."""

STATS_RELEASE = Mechanism(1.0, 1)
"""One release of noised statistics: a Gaussian mechanism on all records."""


def planned_rounds(algo: Algorithm) -> list[int]:
    """The rounds a client may take part in: 1 .. train.rounds, and 0 for a warm-up round."""
    return ([0] if algo.warmup_round else []) + list(range(1, algo.train.rounds + 1))


def noise_for(privacy: PrivacyConfig, plan: Sequence[Mechanism]) -> float:
    """The noise multiplier of every release: ``privacy.noise_multiplier`` when set, else the
    calibrated one for ``plan`` (all releases of a client over the run) and ``privacy.epsilon``."""
    if privacy.noise_multiplier > 0:
        return privacy.noise_multiplier
    return noise_multiplier_for(privacy.epsilon, privacy.delta, plan)


class PrivacyLedger:
    """The releases of one local update and the client's spend (see the module docstring).

    Args:
        privacy: the run's ``privacy.*`` section.
        noise_multiplier: sigma of every release of this update.
        history: the client's ``dp.history`` so far ((m, 3), possibly empty).
    """

    def __init__(self, privacy: PrivacyConfig, noise_multiplier: float, history: Tensor | None = None) -> None:
        self.privacy = privacy
        self.noise_multiplier = noise_multiplier
        self.active = privacy.enabled
        rows = [] if history is None else [tuple(r) for r in history.tolist()]
        self.rows: list[tuple[float, float, int]] = [(float(z), float(q), int(s)) for z, q, s in rows]

    # ----- releases ------------------------------------------------------------------------
    def record(self, mechanism: Mechanism) -> None:
        """Add one release (at this ledger's noise multiplier) to the history; rows with the same
        (sigma, q) are merged, since RDP composes additively."""
        if not self.active or mechanism.steps == 0:
            return
        z, q = float(self.noise_multiplier), float(mechanism.sample_rate)
        for i, (zi, qi, si) in enumerate(self.rows):
            if zi == z and qi == q:
                self.rows[i] = (zi, qi, si + mechanism.steps)
                return
        self.rows.append((z, q, mechanism.steps))

    def dp_sgd(self, slots: Sequence[Slot] = ()) -> DPSGD | None:
        """The DP-SGD of a `train_epochs` call (None when privacy is off); it records itself."""
        if not self.active:
            return None
        return DPSGD(self.privacy.clip, self.noise_multiplier, slots, on_release=self.record)

    def class_stats(self, z: Tensor, y: Tensor, num_classes: int, generator: torch.Generator) -> ClassStats:
        """The statistics to upload: noised (`noisy_class_stats`, recorded) when private, else exact.

        z (n, d) features, y (n,) labels; returns float64 ClassStats on the CPU.
        """
        if not self.active:
            return class_stats(z, y, num_classes).to("cpu")
        self.record(STATS_RELEASE)
        return noisy_class_stats(z, y, num_classes, self.privacy.stats_clip, self.noise_multiplier, generator)

    def weight(self, num_train: int, released: ClassStats | None = None) -> float:
        """The upload's aggregation weight: n when not private; when private, the released noisy
        total count if statistics were released (post-processing, at least 1), else 1 (n itself
        is private: a uniform average)."""
        if not self.active:
            return float(num_train)
        return max(released.total, 1.0) if released is not None else 1.0

    # ----- the spend -----------------------------------------------------------------------
    def history(self) -> Tensor:
        """(m, 3) float64: the rows so far."""
        return torch.tensor(self.rows, dtype=torch.float64).reshape(-1, 3)

    def epsilon(self) -> float:
        """epsilon spent so far at ``privacy.delta`` (opacus's RDP accountant)."""
        return epsilon_spent(self.rows, self.privacy.delta)

    def state(self, state: Payload) -> Payload:
        """``state`` with ``dp.history`` updated (unchanged when not private)."""
        return {**state, HISTORY: self.history()} if self.active else state

    def metrics(self) -> dict[str, float]:
        """``{"epsilon": ..., "delta": ...}`` spent so far (empty when not private)."""
        return {"epsilon": self.epsilon(), "delta": self.privacy.delta} if self.active else {}


def ledger_for(algo: Algorithm, state: Payload, num_train: int) -> PrivacyLedger:
    """The ledger of one local update of a client with ``num_train`` training records, its noise
    calibrated for the client's releases over every planned round (`Algorithm.privacy_plan`)."""
    privacy = algo.privacy
    if not privacy.enabled:
        return PrivacyLedger(privacy, 0.0)
    plan = [m for r in planned_rounds(algo) for m in algo.privacy_plan(r, num_train)]
    return PrivacyLedger(privacy, noise_for(privacy, plan), state.get(HISTORY))

