"""Local training as a plain function of (model, trainable parameters, data, settings, generator).

No DataLoader: data already sits in memory as tensors, and batches are slices of a seeded
permutation. Only the given parameters receive gradients; the others are frozen for the call.
When only the head of a SplitModel trains and its body behaves the same in train and eval mode
(no normalisation or dropout layers), the body's features are computed once per call and every
epoch trains the head on them: the same batches and updates, without a body forward per step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from pfedkit.algorithms.toolkit.functional_step import UPDATES, OptState, Params, UpdateRule, local_step
from pfedkit.core.config import TrainSettings, register_choices
from pfedkit.models.split import SplitModel

if TYPE_CHECKING:
    from pfedkit.algorithms.toolkit.dp_sgd import DPSGD

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(x (B, C, H, W), y (B,)) -> scalar loss, computed with the workspace model."""


OPTIMIZERS: dict[str, Callable[[list[nn.Parameter], TrainSettings, float], torch.optim.Optimizer]] = {
    "sgd": lambda params, s, lr: torch.optim.SGD(params, lr=lr, momentum=s.momentum, weight_decay=s.weight_decay),
    "adam": lambda params, s, lr: torch.optim.Adam(params, lr=lr, weight_decay=s.weight_decay),
}
"""``train.optimizer`` names -> ``(params, settings, lr) -> torch.optim`` optimiser. Training runs
`functional_step.local_step`, whose update repeats these optimisers' arithmetic bit for bit; they
remain the reference (tests) and drive plain loops outside the federation (benchmarks' floor)."""

register_choices("optimizer", lambda: tuple(UPDATES))


def make_optimizer(params: list[nn.Parameter], settings: TrainSettings, lr: float | None = None) -> torch.optim.Optimizer:
    """The ``settings.optimizer`` optimiser (SGD with momentum / weight decay, or Adam) over ``params``."""
    if settings.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {settings.optimizer!r}")
    return OPTIMIZERS[settings.optimizer](params, settings, settings.lr if lr is None else lr)


def batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Index tensors of one shuffled epoch over ``n`` samples."""
    perm = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        yield perm[start:start + batch_size]


def train_epochs(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: TrainSettings,
    generator: torch.Generator,
    params: Iterable[nn.Parameter] | None = None,
    loss_fn: LossFn | None = None,
    epochs: int | None = None,
    lr: float | None = None,
    after_step: Callable[[], None] | None = None,
    private: DPSGD | None = None,
) -> float:
    """Run ``epochs`` (default ``settings.local_epochs``) of minibatch training; return mean loss.

    Args:
        model: the workspace model (trained in place).
        x: (n, C, H, W) images; y: (n,) labels.
        params: parameters to train (default all); the rest get no gradient during the call.
        loss_fn: loss of a batch (default cross-entropy of ``model(x)``).
        after_step: called after every optimiser step (e.g. for projections).
        private: DP-SGD instead of plain minibatches (`toolkit.dp_sgd`; what privacy.* asks of a
            method): Poisson-sampled steps, clipped per-example gradients plus Gaussian noise.
    """
    if y.numel() == 0:
        return float("nan")
    all_params = list(model.parameters())
    train_params = all_params if params is None else list(params)
    if not train_params:  # e.g. the identity body of a linear probe: nothing to train
        return float("nan")
    saved = [p.requires_grad for p in all_params]
    if params is not None:  # freeze what is not trained (no gradient work for it)
        chosen = {id(p) for p in train_params}
        for p in all_params:
            p.requires_grad_(id(p) in chosen)
    if loss_fn is None and params is not None and _frozen_pure_body(model, train_params):
        x = features_in_batches(model, x)  # (n, d); the head alone maps them to logits
        loss_fn = lambda zb, yb: F.cross_entropy(model.head(zb), yb)  # noqa: E731
    loss_fn = loss_fn or (lambda xb, yb: F.cross_entropy(model(xb), yb))
    rule = UpdateRule.from_settings(settings, lr)
    params: Params = {str(i): p for i, p in enumerate(train_params)}
    state: OptState = {}
    grad_fn = _autograd_grads(loss_fn)
    model.train()
    total, steps = torch.zeros((), device=x.device), 0
    grad_mode = torch.enable_grad()  # callers may sit inside no_grad (e.g. evaluation fine-tuning)
    grad_mode.__enter__()
    try:
        if private is not None:  # DP-SGD: the same model, parameters, loss and optimiser; a private gradient
            return private.run(model, x, y, train_params, loss_fn, rule, settings.local_epochs if epochs is None
                               else epochs, settings.batch_size, generator, after_step)
        for _ in range(settings.local_epochs if epochs is None else epochs):
            for idx in batches(len(y), settings.batch_size, generator):
                idx = idx.to(x.device)
                step = local_step(grad_fn, params, {}, state, (x[idx], y[idx]), rule, inplace=True)
                state = step.state
                if after_step is not None:
                    after_step()
                total += step.loss
                steps += 1
    finally:
        grad_mode.__exit__(None, None, None)
        if params is not None:
            for p, flag in zip(all_params, saved):
                p.requires_grad_(flag)
    return float(total) / max(steps, 1)


def _autograd_grads(loss_fn: LossFn):  # noqa: ANN202 (a GradFn)
    """The serial path's gradient function: ``loss_fn`` reads the workspace model, whose trainable
    parameters are the ``params`` handed to the step; ``backward`` differentiates it. Other leaves
    the loss uses get their ``.grad`` as well, so an ``after_step`` hook may read it (APFL's
    mixing weight), exactly as with a torch.optim loop."""

    def grad_fn(params: Params, buffers: Params, batch: tuple[torch.Tensor, torch.Tensor]):  # noqa: ANN202
        for p in params.values():
            p.grad = None
        loss = loss_fn(*batch)
        loss.backward()
        return {name: p.grad for name, p in params.items()}, loss.detach(), buffers

    return grad_fn


_MODE_DEPENDENT = (nn.modules.batchnorm._NormBase, nn.modules.dropout._DropoutNd)


def _frozen_pure_body(model: nn.Module, train_params: list[nn.Parameter]) -> bool:
    """True when ``model`` is a SplitModel, only head parameters train, and no body module
    behaves differently in train mode (so features cached in eval mode are exact)."""
    if not isinstance(model, SplitModel):
        return False
    head_ids = {id(p) for p in model.head.parameters()}
    if not all(id(p) in head_ids for p in train_params):
        return False
    return not any(isinstance(m, _MODE_DEPENDENT) for m in model.body.modules())


@torch.no_grad()
def predict_in_batches(predictor: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """(n, C, H, W) -> (n, num_classes) outputs, computed in chunks without gradients."""
    if x.shape[0] == 0:
        return torch.zeros(0, 0)
    return torch.cat([predictor(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])


@torch.no_grad()
def features_in_batches(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """(n, C, H, W) -> (n, d) body features of a SplitModel, in eval mode."""
    model.eval()
    return predict_in_batches(model.features, x, batch_size)  # type: ignore[attr-defined]
