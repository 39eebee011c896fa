"""train_epochs: head-only training reuses the frozen body's features when that is exact."""

import torch
from torch import nn

from pfedkit.algorithms.protocol import TrainSettings
from pfedkit.algorithms.toolkit.training import train_epochs
from pfedkit.models.split import SplitModel


def _model(extra: nn.Module | None = None) -> SplitModel:
    torch.manual_seed(0)
    layers = [nn.Flatten(), nn.Linear(12, 8), nn.ReLU()] + ([extra] if extra is not None else [])
    return SplitModel(nn.Sequential(*layers), nn.Linear(8, 3), feature_dim=8, num_classes=3)


def _train_head(model: SplitModel, epochs: int = 3) -> int:
    """Trains the head; returns how many times the body ran."""
    calls = []
    hook = model.body.register_forward_hook(lambda *_: calls.append(1))
    x, y = torch.randn(50, 3, 2, 2, generator=torch.Generator().manual_seed(1)), torch.arange(50) % 3
    settings = TrainSettings(local_epochs=1, batch_size=8, optimizer="sgd", lr=0.1, momentum=0.9)
    train_epochs(model, x, y, settings, torch.Generator().manual_seed(2),
                 params=list(model.head.parameters()), epochs=epochs)
    hook.remove()
    return len(calls)


def test_head_training_on_cached_features_equals_the_full_forward() -> None:
    cached = _model()
    uncached = _model(nn.Dropout(0.0))  # a dropout layer (even p=0) turns the cache off
    assert _train_head(cached) == 1  # 50 samples: one chunk of features for all 3 epochs
    assert _train_head(uncached) == 3 * 7  # 7 batches per epoch
    for a, b in zip(cached.head.parameters(), uncached.head.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert torch.equal(cached.body[1].weight, _model().body[1].weight)  # body untouched


def test_no_cache_when_the_body_has_batch_norm() -> None:
    bn = _model(nn.BatchNorm1d(8))
    assert _train_head(bn, epochs=2) == 2 * 7
    assert bn.body[3].num_batches_tracked.item() == 14  # running statistics kept updating

