"""The accountant: opacus's published numbers, and target epsilon -> noise -> epsilon round trips."""

from __future__ import annotations

import math
import sys

import pytest

from pfedkit.core.errors import ConfigError
from pfedkit.stats.privacy_accounting import (
    CALIBRATION_ORDERS,
    ORDERS,
    Mechanism,
    epsilon_spent,
    noise_multiplier_for,
    require_accountant,
)

opacus_accountants = pytest.importorskip("opacus.accountants")

DELTA = 1e-5


def test_opacus_documented_case_reproduced() -> None:
    """opacus's own accountant test: sigma 1.5, q 0.04, 90 epochs (2250 steps), delta 1e-5 ->
    epsilon 7.32911117143 with its default orders; our orders give the same within 0.1 %."""
    history = [(1.5, 0.04, int(90 / 0.04))]
    default_orders = opacus_accountants.RDPAccountant.DEFAULT_ALPHAS
    assert epsilon_spent(history, DELTA, default_orders) == pytest.approx(7.32911117143, abs=1e-6)
    assert epsilon_spent(history, DELTA) == pytest.approx(7.32911117143, rel=1e-3)


def test_abadi_example_within_the_moments_accountant_bound() -> None:
    """Abadi et al. (CCS 2016): q = 0.01, sigma = 4, 10000 steps, delta 1e-5 gave
    epsilon ~ 1.26 with the moments accountant; RDP with fractional orders is at least as tight."""
    eps = epsilon_spent([(4.0, 0.01, 10_000)], DELTA)
    assert 0.9 < eps <= 1.26


def test_same_numbers_as_rdp_accountant_for_a_mixed_history() -> None:
    """A client's history (DP-SGD steps and full-data statistics releases) gives what opacus's
    RDPAccountant gives for that history at the same orders."""
    history = [(2.0, 0.3, 40), (2.0, 1.0, 5), (3.5, 0.5, 12)]
    accountant = opacus_accountants.RDPAccountant()
    accountant.history = list(history)
    assert epsilon_spent(history, DELTA) == pytest.approx(accountant.get_epsilon(DELTA, alphas=list(ORDERS)), rel=1e-12)


@pytest.mark.parametrize("target", [1.0, 3.0, 8.0])
def test_noise_for_target_round_trips(target: float) -> None:
    """sigma calibrated for a plan (20 rounds of a 4-step DP-SGD epoch and a statistics release,
    plus a warm-up release) spends at most the target and at least 98 % of it."""
    plan = [Mechanism(0.5, 4), Mechanism(1.0, 1)] * 20 + [Mechanism(1.0, 1)]
    sigma = noise_multiplier_for(target, DELTA, plan)
    eps = epsilon_spent([(sigma, 0.5, 80), (sigma, 1.0, 21)], DELTA)
    assert 0.98 * target <= eps <= target


def test_calibration_matches_opacus_get_noise_multiplier() -> None:
    """opacus's documented get_noise_multiplier case: epsilon 8, delta 1e-5, q 0.04, 90 epochs ->
    sigma 1.425307617 (its tolerance 0.01 in epsilon); ours agrees within 1 %."""
    sigma = noise_multiplier_for(8.0, DELTA, [Mechanism(0.04, int(90 / 0.04))])
    assert sigma == pytest.approx(1.425307617, rel=0.01)


def test_more_budget_needs_less_noise_and_nothing_released_needs_none() -> None:
    plan = [Mechanism(0.25, 8)] * 10
    sigmas = [noise_multiplier_for(e, DELTA, plan) for e in (1.0, 3.0, 8.0)]
    assert sigmas[0] > sigmas[1] > sigmas[2] > 0
    assert noise_multiplier_for(1.0, DELTA, []) == 0.0
    assert noise_multiplier_for(1.0, DELTA, [Mechanism(0.5, 0)]) == 0.0


def test_empty_history_spends_nothing_and_no_noise_spends_everything() -> None:
    assert epsilon_spent([], DELTA) == 0.0
    assert epsilon_spent([(0.0, 0.5, 3)], DELTA) == math.inf


def test_calibration_orders_only_over_state_epsilon() -> None:
    """Fewer orders can only make epsilon larger (the search is therefore never too lenient)."""
    history = [(1.2, 0.2, 50), (1.2, 1.0, 3)]
    assert epsilon_spent(history, DELTA, CALIBRATION_ORDERS) >= epsilon_spent(history, DELTA)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        Mechanism(0.0, 1)
    with pytest.raises(ValueError):
        noise_multiplier_for(0.0, DELTA, [Mechanism(0.5, 1)])


def test_missing_opacus_is_one_line_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opacus.accountants.analysis", None)
    monkeypatch.setitem(sys.modules, "opacus.accountants.analysis.rdp", None)
    with pytest.raises(ConfigError, match=r"pip install 'pfedkit\[privacy\]'") as err:
        require_accountant()
    assert "\n" not in str(err.value)
