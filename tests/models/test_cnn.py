"""The small CNN: channels-last layout and pool-before-ReLU change speed, not the function."""

import torch
import torch.nn.functional as F
from torch import nn

from pfedkit.models.cnn import CNNOptions, small_cnn


def _reference(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The textbook order (conv, ReLU, pool) in the default layout, with the model's weights."""
    body = model.body
    h = F.max_pool2d(F.relu(F.conv2d(x, body[0].weight.contiguous(), body[0].bias, padding=1)), 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, body[3].weight.contiguous(), body[3].bias, padding=1)), 2)
    return model.head(F.relu(body[7](h.flatten(1))))


def test_same_outputs_and_gradients_as_the_textbook_cnn() -> None:
    torch.manual_seed(0)
    model = small_cnn((3, 12, 12), 5, CNNOptions(width=4, feature_dim=8))
    assert model.body[0].weight.is_contiguous(memory_format=torch.channels_last)
    x, y = torch.randn(6, 3, 12, 12), torch.arange(6) % 5
    grads = []
    for forward in (model, lambda xb: _reference(model, xb)):
        model.zero_grad()
        out = forward(x)
        F.cross_entropy(out, y).backward()
        grads.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    (out_a, grad_a), (out_b, grad_b) = grads
    assert torch.allclose(out_a, out_b, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(grad_a, grad_b))
    assert [k for k in model.state_dict() if k.startswith("body.")][:2] == ["body.0.weight", "body.0.bias"]
