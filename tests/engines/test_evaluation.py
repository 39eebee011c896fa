"""Per-client evaluation: accuracy counts and calibration bins from one set of predictions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from support import ctx

from pfedkit.core.calibration import DEFAULT_BINS, CalibrationBins, expected_calibration_error
from pfedkit.data.client_data import ClientData
from pfedkit.engines.evaluation import evaluate_client

C = 10


class StubAlgorithm:
    """Only what `evaluate_client` calls: a personal predictor."""

    num_classes = C

    def __init__(self, predictor):
        self.predictor = predictor

    def personal_predictor(self, broadcast, state, data, ctx):
        return self.predictor


def labelled_images(labels: torch.Tensor) -> torch.Tensor:
    """(n, 1, 2, 2) images whose first pixel holds the label (so a stub can read it)."""
    x = torch.zeros(len(labels), 1, 2, 2)
    x[:, 0, 0, 0] = labels.float()
    return x


def client(y_val: torch.Tensor, y_test: torch.Tensor) -> ClientData:
    y_train = torch.arange(C)
    return ClientData(0, labelled_images(y_train), y_train, labelled_images(y_val), y_val,
                      labelled_images(y_test), y_test, C)


def label_of(x: torch.Tensor) -> torch.Tensor:
    return x[:, 0, 0, 0].long()


def test_perfectly_confident_correct_predictor_has_zero_ece():
    perfect = StubAlgorithm(lambda x: 100.0 * torch.nn.functional.one_hot(label_of(x), C).float())
    gen = torch.Generator().manual_seed(0)
    data = client(torch.randint(0, C, (37,), generator=gen), torch.randint(0, C, (53,), generator=gen))
    res = evaluate_client(perfect, {}, {}, data, ctx())
    for split, n in (("val", 37), ("test", 53)):
        assert res[f"{split}_correct"] == res[f"{split}_n"] == n
        bins = res[f"{split}_calib"]
        assert isinstance(bins, CalibrationBins) and bins.n_bins == DEFAULT_BINS == 15
        assert bins.counts[-1] == n and bins.total == n  # every confidence is 1
        assert bins.ece() == pytest.approx(0.0, abs=1e-12)


def test_confidently_wrong_predictor_has_ece_one():
    wrong = StubAlgorithm(lambda x: 100.0 * torch.nn.functional.one_hot((label_of(x) + 1) % C, C).float())
    data = client(torch.arange(C), torch.arange(C))
    res = evaluate_client(wrong, {}, {}, data, ctx())
    assert res["test_correct"] == 0
    assert res["test_calib"].ece() == pytest.approx(1.0)


@pytest.mark.parametrize("log_probs", [True, False])
def test_logits_and_log_probabilities_give_the_same_bins(log_probs):
    """softmax(log p) = p: a predictor returning log-probabilities is read as probabilities p,
    and one returning logits z as softmax(z)."""
    gen = torch.Generator().manual_seed(1)
    table = torch.randn(C, C, generator=gen, dtype=torch.float64) * 2  # a row of logits per label
    probs = torch.softmax(table, dim=1)
    out = torch.log(probs) if log_probs else table + 3.0  # logits are shift-invariant
    predictor = StubAlgorithm(lambda x: out[label_of(x)].float())
    y = torch.randint(0, C, (200,), generator=gen)
    res = evaluate_client(predictor, {}, {}, client(y, y), ctx())
    expected = expected_calibration_error(probs[y].numpy(), y.numpy())
    assert res["test_calib"].ece() == pytest.approx(expected, abs=1e-6)
    np.testing.assert_allclose(res["test_calib"].conf_sum.sum(), probs[y].max(dim=1).values.sum().item(), rtol=1e-6)
    assert res["test_correct"] == int((table[y].argmax(1) == y).sum())


def test_empty_split_gives_empty_bins():
    perfect = StubAlgorithm(lambda x: torch.nn.functional.one_hot(label_of(x), C).float())
    res = evaluate_client(perfect, {}, {}, client(torch.zeros(0, dtype=torch.long), torch.arange(C)), ctx())
    assert res["val_n"] == 0 and res["val_calib"].total == 0 and math.isnan(res["val_calib"].ece())
    assert res["test_calib"].total == C


def test_per_class_counts_scarce_class_accuracy_and_count_bands():
    """A predictor right on classes 0-4 only: per-class counts say so, and the report's rare /
    unseen accuracies pool exactly the (client, class) pairs with 1-9 / 0 training samples."""
    from pfedkit.engines.report import accuracy_by_class_count, scarce_class_accuracy
    from pfedkit.engines.simulate import pool_evaluations

    half = StubAlgorithm(lambda x: 100.0 * torch.nn.functional.one_hot(
        torch.where(label_of(x) < 5, label_of(x), (label_of(x) + 1) % C), C).float())
    y_train = torch.tensor([0] * 20 + [1] * 3 + [5] * 2)  # class 0 plenty, 1 and 5 rare, the rest unseen
    y_test = torch.tensor([0, 0, 1, 5, 5, 7])
    data = ClientData(0, labelled_images(y_train), y_train, labelled_images(y_test), y_test,
                      labelled_images(y_test), y_test, C)
    res = evaluate_client(half, {}, {}, data, ctx())
    assert res["test_class_n"] == [2, 1, 0, 0, 0, 2, 0, 1, 0, 0]
    assert res["test_class_correct"] == [2, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    assert res["train_class_n"] == [20, 3, 0, 0, 0, 2, 0, 0, 0, 0]
    scarce = scarce_class_accuracy({"eval": pool_evaluations([res, res], [])})
    assert scarce == {"rare": pytest.approx(1 / 3), "rare_n": 6.0, "unseen": 0.0, "unseen_n": 2.0}
    assert scarce_class_accuracy({"eval": {"val_n": [1]}}) is None  # records from before per-class entries
    bands = accuracy_by_class_count({"eval": pool_evaluations([res, res], [])}, [(10, 99), (2, 3), (2, 2), (4, 9)])
    assert bands[:3] == [(1.0, 4.0), (pytest.approx(1 / 3), 6.0), (0.0, 4.0)]  # class 0; classes 1 and 5; class 5
    assert bands[3][1] == 0.0 and math.isnan(bands[3][0])
    assert accuracy_by_class_count({"eval": pool_evaluations([res, res], [])}, [(2, 2)], clients=[1]) == [(0.0, 2.0)]
