"""DP-SGD through `train_epochs(private=...)`: per-example clipping against a manual loop, the
noise scale, plain SGD when there is neither clipping nor noise, tensors outside the model."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pfedkit.algorithms.toolkit.dp_sgd import DPSGD, poisson_schedule
from pfedkit.algorithms.toolkit.privacy import PrivacyLedger
from pfedkit.algorithms.toolkit.training import train_epochs
from pfedkit.core.config import PrivacyConfig, TrainSettings
from pfedkit.core.errors import ConfigError
from pfedkit.models.split import SplitModel
from pfedkit.stats.privacy_accounting import Mechanism, noise_multiplier_for

N, D_IN, D_FEAT, C = 8, 5, 4, 3
LR = 0.5


def tiny_model(seed: int = 0, head_out: int = C) -> SplitModel:
    torch.manual_seed(seed)
    body = nn.Sequential(nn.Linear(D_IN, D_FEAT), nn.Tanh())
    return SplitModel(body, nn.Linear(D_FEAT, head_out), D_FEAT, head_out)


def data(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, D_IN, generator=g) * 2, torch.randint(0, C, (N,), generator=g)


def full_batch(batch_size: int = N) -> TrainSettings:
    return TrainSettings(local_epochs=1, batch_size=batch_size, optimizer="sgd", lr=LR, momentum=0.0)


def flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_poisson_schedule() -> None:
    assert poisson_schedule(100, 32, 2) == Mechanism(0.32, 6)
    assert poisson_schedule(10, 32, 3) == Mechanism(1.0, 3)
    assert poisson_schedule(0, 32, 3).steps == 0


def test_every_example_contributes_at_most_clip_like_a_manual_loop() -> None:
    """q = 1 (batch >= n), no noise: one step moves the parameters by -lr * sum_i clip(g_i) / n,
    with g_i computed one example at a time by autograd and clipped to norm C over all tensors."""
    clip = 0.05
    x, y = data()
    model, reference = tiny_model(), tiny_model()
    train_epochs(model, x, y, full_batch(), torch.Generator().manual_seed(0), private=DPSGD(clip, 0.0))
    summed = torch.zeros_like(flat(reference))
    for i in range(N):
        reference.zero_grad()
        F.cross_entropy(reference(x[i:i + 1]), y[i:i + 1]).backward()
        g = torch.cat([p.grad.flatten() for p in reference.parameters()])
        assert float(g.norm()) > clip  # clipping is active for every example
        summed += g * min(1.0, clip / float(g.norm()))
    torch.testing.assert_close(flat(model), flat(reference) - LR * summed / N, rtol=1e-5, atol=1e-6)


def test_one_record_moves_the_update_by_at_most_two_clips() -> None:
    """Replacing one record by an extreme one changes the noiseless update by <= lr * 2C / (q n)."""
    clip = 0.1
    x, y = data()
    x_changed = x.clone()
    x_changed[3] = 1e4
    a, b = tiny_model(), tiny_model()
    train_epochs(a, x, y, full_batch(), torch.Generator().manual_seed(0), private=DPSGD(clip, 0.0))
    train_epochs(b, x_changed, y, full_batch(), torch.Generator().manual_seed(0), private=DPSGD(clip, 0.0))
    assert float((flat(a) - flat(b)).norm()) <= LR * 2 * clip / N + 1e-6


def test_no_clip_and_no_noise_is_plain_sgd() -> None:
    x, y = data()
    plain, private = tiny_model(), tiny_model()
    for _ in range(3):  # three full-batch epochs
        train_epochs(plain, x, y, full_batch(), torch.Generator().manual_seed(0))
        train_epochs(private, x, y, full_batch(), torch.Generator().manual_seed(0),
                     private=DPSGD(float("inf"), 0.0))
    torch.testing.assert_close(flat(private), flat(plain), rtol=1e-5, atol=1e-6)


def test_noise_has_std_sigma_times_clip() -> None:
    """With a loss of zero gradient, one full-batch step is pure noise: -lr * N(0, (sigma C)^2) / n."""
    sigma, clip = 1.7, 0.3
    model = tiny_model(head_out=400)  # 1,600 head weights to estimate the std from
    x, y = data()
    before = flat(model)

    def zero_loss(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return 0.0 * model(xb).sum()

    train_epochs(model, x, y, full_batch(), torch.Generator().manual_seed(0), loss_fn=zero_loss,
                 private=DPSGD(clip, sigma))
    step = (flat(model) - before) * N / LR
    assert float(step.std()) == pytest.approx(sigma * clip, rel=0.05)
    assert abs(float(step.mean())) < 0.05 * sigma * clip


@dataclass
class Anchors:
    """A trained tensor held outside the model (like pFedGM's navigator)."""

    w: torch.Tensor


def test_tensors_outside_the_model_get_their_per_example_gradients() -> None:
    """A loss that reads a tensor held by another object: DP-SGD (no clip, no noise, q = 1)
    updates it exactly as full-batch SGD does when the object is declared as a slot."""
    x, y = data()
    outcomes = []
    for private in (None, "dp"):
        model = tiny_model()
        holder = Anchors(nn.Parameter(torch.randn(C, D_FEAT, generator=torch.Generator().manual_seed(3))))

        def loss_fn(xb: torch.Tensor, yb: torch.Tensor, m: SplitModel = model, h: Anchors = holder) -> torch.Tensor:
            return F.cross_entropy(-torch.cdist(m.features(xb), h.w) ** 2, yb)

        dp = DPSGD(float("inf"), 0.0, slots=[(holder, "w")]) if private else None
        params = list(model.body.parameters()) + [holder.w]
        train_epochs(model, x, y, full_batch(), torch.Generator().manual_seed(0), params=params, loss_fn=loss_fn,
                     private=dp)
        outcomes.append((flat(model.body), holder.w.detach().clone()))
    torch.testing.assert_close(outcomes[1][0], outcomes[0][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(outcomes[1][1], outcomes[0][1], rtol=1e-5, atol=1e-6)
    assert not torch.equal(outcomes[0][1], torch.randn(C, D_FEAT, generator=torch.Generator().manual_seed(3)))


def test_unknown_trained_tensor_is_refused() -> None:
    model = tiny_model()
    stray = nn.Parameter(torch.zeros(2))
    x, y = data()
    with pytest.raises(ValueError, match="neither a parameter of the model nor one of the slots"):
        train_epochs(model, x, y, full_batch(), torch.Generator(), params=[stray],
                     loss_fn=lambda xb, yb: model(xb).sum() + stray.sum(), private=DPSGD(1.0, 1.0))


def test_batchnorm_is_refused_with_one_line() -> None:
    torch.manual_seed(0)
    model = SplitModel(nn.Sequential(nn.Linear(D_IN, D_FEAT), nn.BatchNorm1d(D_FEAT)), nn.Linear(D_FEAT, C),
                       D_FEAT, C)
    x, y = data()
    with pytest.raises(ConfigError, match="BatchNorm") as err:
        train_epochs(model, x, y, full_batch(), torch.Generator(), private=DPSGD(1.0, 1.0))
    assert "\n" not in str(err.value)


def test_ledger_records_what_ran() -> None:
    """The mechanism the accountant is told of is the schedule DP-SGD actually ran."""
    ledger = PrivacyLedger(PrivacyConfig(noise_multiplier=2.0), 2.0)
    x, y = data()
    train_epochs(tiny_model(), x, y, full_batch(batch_size=3), torch.Generator().manual_seed(0), epochs=2,
                 private=ledger.dp_sgd())
    mech = poisson_schedule(N, 3, 2)
    assert ledger.rows == [(2.0, mech.sample_rate, mech.steps)]
    assert ledger.metrics()["epsilon"] > 0


def test_calibrated_noise_is_what_dp_sgd_adds_and_what_the_accountant_counts() -> None:
    """Target epsilon 8 for one full-batch DP-SGD epoch of n = 8 records (q = 1, one step: the
    Gaussian mechanism): the calibrated sigma times C is the std of the noise DP-SGD adds, and the
    accountant reports the target for the release that ran."""
    target = 8.0
    ledger = PrivacyLedger(PrivacyConfig(epsilon=target), 0.0)
    sigma = noise_multiplier_for(target, 1e-5, [poisson_schedule(N, N, 1)])
    ledger.noise_multiplier = sigma
    model = tiny_model(head_out=400)
    x, y = data()
    before = flat(model)

    def zero_loss(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return 0.0 * model(xb).sum()

    train_epochs(model, x, y, full_batch(), torch.Generator().manual_seed(1), loss_fn=zero_loss,
                 private=ledger.dp_sgd())
    step = (flat(model) - before) * N / LR
    assert float(step.std()) == pytest.approx(sigma * PrivacyConfig().clip, rel=0.05)
    assert 0.99 * target <= ledger.epsilon() <= target
