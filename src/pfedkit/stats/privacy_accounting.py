"""Privacy accounting: the (epsilon, delta) a client has spent, from opacus's RDP accountant.

Every release a client makes under ``privacy.*`` is a (sub)sampled Gaussian mechanism with a
noise multiplier sigma (noise std / L2 sensitivity):

* a DP-SGD phase: ``steps`` steps, each on a Poisson sample of the client's records with rate q;
* a release of noised statistics: one Gaussian mechanism on all records (q = 1, one step).

A client's spend is the Rényi-DP composition of all its releases, converted to (epsilon, delta)
by opacus's ``RDPAccountant`` (Mironov 2017; Mironov, Talwar and Zhang 2019, "Rényi Differential
Privacy of the Sampled Gaussian Mechanism"). Nothing here is an accountant of our own: the RDP
curves and the conversion are opacus's; we only choose the orders and search sigma for a target.

The protected unit is one training record of one client (add/remove adjacency, the one the
sampled-Gaussian RDP bound is proved for). opacus is imported only when a function here runs.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from pfedkit.core.errors import ConfigError

ORDERS: tuple[float, ...] = (
    (1.25, 1.5, 1.75, 2.5, 3.5, 4.5, 5.5) + tuple(float(a) for a in range(2, 64))
    + (64.0, 80.0, 96.0, 128.0, 192.0, 256.0)
)
"""Rényi orders: the integers 2 .. 63 of opacus's default orders, a few fractional ones below 6
(opacus's default has 1.1, 1.2, .. 10.9; for the epsilons of interest here, 0.5 to 20, this set
gives the same epsilon to within 0.5 %, at a tenth of the cost) and larger orders, at which a
few releases with much noise (small epsilon, no subsampling) reach their best bound. Fewer
orders can only over-state epsilon, never under-state it."""

CALIBRATION_ORDERS: tuple[float, ...] = tuple(a for a in ORDERS if a == int(a))
"""The integer orders of `ORDERS`: `noise_multiplier_for` searches with these (three times
faster); epsilon at a subset of orders is an upper bound of epsilon at all of them, so the
calibrated noise is never too small for the epsilon `epsilon_spent` reports."""

History = Sequence[tuple[float, float, int]]
"""Rows (noise multiplier, sample rate, steps), one per kind of release; order does not matter."""


@dataclass(frozen=True)
class Mechanism:
    """One release pattern, before its noise multiplier is chosen.

    Attributes:
        sample_rate: q in (0, 1], the Poisson probability that a record is in a step's sample.
        steps: how many such steps (>= 0).
    """

    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        if not 0.0 < self.sample_rate <= 1.0 or self.steps < 0:
            raise ValueError(f"Mechanism: need 0 < sample_rate <= 1 and steps >= 0, got {self.sample_rate}, "
                             f"{self.steps}")


def epsilon_spent(history: History, delta: float, orders: Sequence[float] = ORDERS) -> float:
    """epsilon of the composition of ``history`` at ``delta`` (0 for an empty history, inf when
    some release had no noise).

    The RDP of each row is opacus's ``compute_rdp`` (one step, cached per (sigma, q), times the
    steps: RDP composes additively, which is what ``compute_rdp(steps=...)`` does too) and the
    conversion is opacus's ``get_privacy_spent``: the same numbers as
    ``RDPAccountant.get_epsilon(delta, alphas=orders)`` with ``history`` as its history.
    """
    rows = [(float(z), float(q), int(s)) for z, q, s in history if int(s) > 0]
    if not rows:
        return 0.0
    if any(z <= 0.0 for z, _, _ in rows):
        return math.inf
    get_privacy_spent = _rdp_analysis().get_privacy_spent
    key = tuple(float(a) for a in orders)
    rdp = sum(steps * _rdp_one_step(z, q, key) for z, q, steps in rows)
    with warnings.catch_warnings():  # "optimal order is the largest alpha": the bound is still valid
        warnings.simplefilter("ignore", UserWarning)
        eps, _ = get_privacy_spent(orders=list(key), rdp=rdp, delta=float(delta))
    return float(eps)


@functools.lru_cache(maxsize=8192)
def _rdp_one_step(noise_multiplier: float, sample_rate: float, orders: tuple[float, ...]) -> np.ndarray:
    """opacus's RDP curve of one sampled Gaussian step, (len(orders),) float64."""
    compute_rdp = _rdp_analysis().compute_rdp
    return np.asarray(compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=list(orders)),
                      dtype=np.float64)


def _rdp_analysis() -> Any:
    """opacus's RDP analysis module (ConfigError with the install command when opacus is missing)."""
    try:
        from opacus.accountants.analysis import rdp
    except ImportError as err:
        raise ConfigError(f"privacy.* needs opacus's accountant: pip install 'pfedkit[privacy]' ({err})") from None
    return rdp


def require_accountant() -> None:
    """ConfigError (one line, with the fix) when opacus cannot be imported; call before any work."""
    _rdp_analysis()


def noise_multiplier_for(target_epsilon: float, delta: float, plan: Sequence[Mechanism],
                         rel_tolerance: float = 5e-3) -> float:
    """A noise multiplier sigma, at most ``rel_tolerance`` above the smallest one, such that the
    mechanisms of ``plan``, all with that sigma, compose to at most ``target_epsilon`` at ``delta``.

    Bisection over `epsilon_spent` at `CALIBRATION_ORDERS` (epsilon decreases in sigma), as
    opacus's ``get_noise_multiplier`` does for a single mechanism; `epsilon_spent` of the plan
    with the result never exceeds the target. An empty plan (nothing released) needs no
    noise: 0. Results are cached per (target, delta, plan).

    Raises:
        ValueError: target_epsilon <= 0, delta outside (0, 1), or a target that would need
            sigma > 1e6.
    """
    if target_epsilon <= 0.0 or not 0.0 < delta < 1.0:
        raise ValueError(f"noise_multiplier_for: need target_epsilon > 0 and 0 < delta < 1, got "
                         f"{target_epsilon}, {delta}")
    merged: dict[float, int] = {}
    for m in plan:
        merged[m.sample_rate] = merged.get(m.sample_rate, 0) + m.steps
    return _calibrate(float(target_epsilon), float(delta), tuple(sorted(merged.items())), rel_tolerance)


@functools.lru_cache(maxsize=1024)
def _calibrate(target: float, delta: float, plan: tuple[tuple[float, int], ...], rel_tolerance: float) -> float:
    if not any(steps for _, steps in plan):
        return 0.0

    def eps(sigma: float) -> float:
        return epsilon_spent([(sigma, q, steps) for q, steps in plan], delta, CALIBRATION_ORDERS)

    low, high = 0.0, 1.0
    while eps(high) > target:
        low, high = high, 2.0 * high
        if high > 1e6:
            raise ValueError(f"epsilon={target:g} at delta={delta:g} would need a noise multiplier above 1e6")
    while high - low > rel_tolerance * high:
        mid = 0.5 * (low + high)
        if eps(mid) > target:
            low = mid
        else:
            high = mid
    return high
