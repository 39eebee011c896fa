import numpy as np
import pytest
import torch

from pfedkit.core.metrics import summarize
from pfedkit.core.payload import payload_nbytes, weighted_average


def test_summary_of_client_accuracies():
    correct = np.array([1, 9, 5, 10, 0, 8, 7, 6, 4, 3, 9])
    total = np.array([10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 0])  # last client has no samples
    s = summarize(correct, total)
    acc = correct[:10] / 10
    assert s.mean == pytest.approx(acc.mean())
    assert s.weighted == pytest.approx(correct[:10].sum() / 100)
    assert s.std == pytest.approx(acc.std())
    assert s.worst10 == pytest.approx(0.0)  # ceil(10 % of 10) = 1 worst client


def test_weighted_average_and_bytes():
    a = {"w": torch.ones(3), "n": torch.tensor(2)}
    b = {"w": torch.zeros(3), "n": torch.tensor(5)}
    avg = weighted_average([a, b], [3, 1])
    assert torch.allclose(avg["w"], torch.full((3,), 0.75))
    assert int(avg["n"]) == 5
    assert payload_nbytes(a) == 3 * 4 + 8
