"""The functional step repeats torch.optim's arithmetic: the serial path gives the results the
committed benchmarks came from, bit for bit, and the same update serves stacked clients."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from pfedkit.algorithms.toolkit.functional_step import UpdateRule, apply_update
from pfedkit.algorithms.toolkit.training import batches, make_optimizer, train_epochs
from pfedkit.core.config import TrainSettings
from pfedkit.models import build_model
from pfedkit.models.cnn import CNNOptions

SETTINGS = [
    TrainSettings(optimizer="sgd", lr=0.05, momentum=0.0, weight_decay=0.0),
    TrainSettings(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=0.0),
    TrainSettings(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-3),
    TrainSettings(optimizer="adam", lr=1e-3, weight_decay=0.0),
    TrainSettings(optimizer="adam", lr=1e-3, weight_decay=1e-2),
]


def _torch_optim_loop(model, x, y, s: TrainSettings, generator: torch.Generator) -> float:
    """The loop train_epochs ran before the functional step (torch.optim, in place)."""
    opt = make_optimizer(list(model.parameters()), s)
    model.train()
    total, steps = 0.0, 0
    for _ in range(s.local_epochs):
        for idx in batches(len(y), s.batch_size, generator):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, steps = total + float(loss.detach()), steps + 1
    return total / steps


@pytest.mark.parametrize("s", SETTINGS, ids=lambda s: f"{s.optimizer}-m{s.momentum}-wd{s.weight_decay}")
def test_train_epochs_equals_torch_optim_bit_for_bit(s: TrainSettings) -> None:
    s = dataclasses.replace(s, local_epochs=2, batch_size=16)
    torch.manual_seed(0)
    ref = build_model("cnn", (1, 8, 8), 10, CNNOptions(width=4, feature_dim=8))
    new = build_model("cnn", (1, 8, 8), 10, CNNOptions(width=4, feature_dim=8))
    new.load_state_dict(ref.state_dict())
    x, y = torch.rand(70, 1, 8, 8), torch.randint(0, 10, (70,))  # 70 = 4 full batches + a partial one
    ref_loss = _torch_optim_loop(ref, x, y, s, torch.Generator().manual_seed(3))
    new_loss = train_epochs(new, x, y, s, torch.Generator().manual_seed(3))
    for (name, a), b in zip(ref.named_parameters(), new.parameters()):
        assert torch.equal(a, b), name
    assert new_loss == pytest.approx(ref_loss, rel=1e-6)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_one_update_of_stacked_clients_equals_each_clients_update(optimizer: str) -> None:
    rule = UpdateRule(optimizer, lr=0.1, momentum=0.9, weight_decay=0.01)
    gen = torch.Generator().manual_seed(0)
    p, g1, g2 = (torch.randn(3, 5, 4, generator=gen) for _ in range(3))  # 3 clients of a (5, 4) tensor
    stacked, state = apply_update(rule, {"w": p}, {"w": g1}, {})
    stacked, state = apply_update(rule, stacked, {"w": g2}, state)
    for k in range(3):
        one, one_state = apply_update(rule, {"w": p[k]}, {"w": g1[k]}, {})
        one, _ = apply_update(rule, one, {"w": g2[k]}, one_state)
        assert torch.allclose(one["w"], stacked["w"][k], rtol=0, atol=1e-6)


def test_a_parameter_without_gradient_is_left_alone() -> None:
    rule = UpdateRule("sgd", lr=0.1, momentum=0.9, weight_decay=0.1)
    p = {"a": torch.ones(2), "b": torch.ones(2)}
    new, state = apply_update(rule, p, {"a": torch.ones(2), "b": None}, {})
    assert torch.equal(new["b"], p["b"]) and "b" not in state
    assert torch.allclose(new["a"], torch.full((2,), 1 - 0.1 * 1.1))
    assert torch.equal(p["a"], torch.ones(2))  # the inputs are not modified
