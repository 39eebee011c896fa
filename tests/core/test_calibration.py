"""Expected calibration error: calibrated vs overconfident predictors, streaming bins."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pfedkit.core.calibration import CalibrationBins, confidence_ece, expected_calibration_error

N, C = 50_000, 5


def random_probs(rng: np.random.Generator, temperature: float = 1.0) -> np.ndarray:
    logits = rng.normal(size=(N, C)) * 2.0 / temperature
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def draw_labels(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One label per row drawn from that row's probabilities."""
    u = rng.random(len(probs))[:, None]
    return np.minimum((probs.cumsum(1) < u).sum(1), probs.shape[1] - 1)


def test_calibrated_predictor_has_small_ece() -> None:
    rng = np.random.default_rng(0)
    probs = random_probs(rng)
    labels = draw_labels(rng, probs)
    assert expected_calibration_error(probs, labels) < 0.02


def test_overconfident_predictor_has_large_ece() -> None:
    rng = np.random.default_rng(1)
    true_probs = random_probs(rng)
    labels = draw_labels(rng, true_probs)
    # same ranking, far sharper: confidence near 1 while accuracy stays that of the true model
    sharp = random_probs(np.random.default_rng(1), temperature=0.1)
    assert (sharp.argmax(1) == true_probs.argmax(1)).all()
    assert expected_calibration_error(sharp, labels) > 0.2


def test_hand_computed_ece() -> None:
    conf = np.array([0.95, 0.95, 0.55, 0.55])
    correct = np.array([True, False, True, True])
    # bin (0.9, 1]: |0.95 - 0.5| * 2/4 ; bin (0.5, 0.6]: |0.55 - 1| * 2/4
    assert confidence_ece(conf, correct, n_bins=10) == pytest.approx(0.5 * 0.45 + 0.5 * 0.45)
    assert confidence_ece(np.array([0.0, 1.0]), np.array([0, 1]), n_bins=10) == pytest.approx(0.0)


def test_merged_bins_equal_one_shot_and_accept_tensors() -> None:
    rng = np.random.default_rng(2)
    probs = random_probs(rng)
    labels = rng.integers(0, C, size=N)
    clients = [CalibrationBins() for _ in range(3)]
    for i, (p, y) in enumerate(zip(np.array_split(probs, 7), np.array_split(labels, 7))):
        clients[i % 3].add(torch.from_numpy(p), torch.from_numpy(y))
    merged = clients[0].merge(clients[1]) + clients[2]
    one_shot = CalibrationBins()
    one_shot.add(probs, labels)
    assert merged.total == N == one_shot.total
    np.testing.assert_array_equal(merged.counts, one_shot.counts)
    np.testing.assert_allclose(merged.conf_sum, one_shot.conf_sum)
    np.testing.assert_allclose(merged.correct_sum, one_shot.correct_sum)
    assert merged.ece() == pytest.approx(expected_calibration_error(probs, labels))
    assert clients[0].total < N  # merge does not change its inputs


def test_empty_bins_and_bad_input() -> None:
    assert np.isnan(CalibrationBins().ece())
    with pytest.raises(ValueError):
        CalibrationBins(0)
    with pytest.raises(ValueError):
        CalibrationBins().add(np.ones((3, 2)) / 2, np.zeros(4, dtype=int))
    with pytest.raises(ValueError):
        CalibrationBins(10).merge(CalibrationBins(15))


def test_bins_round_trip_through_plain_lists_and_groups_subtract() -> None:
    rng = np.random.default_rng(3)
    probs, labels = random_probs(rng)[:1000], rng.integers(0, C, size=1000)
    a, b = CalibrationBins(), CalibrationBins()
    a.add(probs[:600], labels[:600])
    b.add(probs[600:], labels[600:])
    d = (a + b).to_dict()
    assert set(d) == {"counts", "conf_sum", "correct_sum"} and all(len(v) == 15 for v in d.values())
    assert json.loads(json.dumps(d)) == d
    back = CalibrationBins.from_dict(d)
    assert back.ece() == (a + b).ece()
    rest = back.without(b)
    np.testing.assert_array_equal(rest.counts, a.counts)
    assert rest.ece() == pytest.approx(a.ece())
    assert (rest.conf_sum[rest.counts == 0] == 0).all()
    with pytest.raises(ValueError):
        b.without(back)  # more predictions than b holds
