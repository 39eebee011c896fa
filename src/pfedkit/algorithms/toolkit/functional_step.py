"""One local optimisation step as a pure function of (trainable params, buffers, optimiser state,
batch): the single definition of a step that the serial path (`training.train_epochs`, one
client) and the batched path (`batched_training.train_together`, clients stacked along a
leading dimension) both run.

The optimiser update repeats the arithmetic of ``torch.optim.SGD`` (momentum, dampening 0, no
Nesterov, L2 weight decay) and ``torch.optim.Adam`` (betas 0.9/0.999, eps 1e-8, L2 weight decay,
no amsgrad) in their single-tensor (CPU) form, op for op, so the serial path reproduces the
results that ``torch.optim`` gave bit for bit (tested). The update is elementwise, so the same
function updates one client's tensors (shape S) or K clients' stacked tensors (shape (K, *S))
without change; with stacked tensors every client has its own momentum / moments, and all active
clients have taken the same number of steps (a fresh optimiser per training call), so Adam's
step count is one integer for the stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import Tensor

from pfedkit.core.config import TrainSettings

Params = dict[str, Tensor]
"""Named tensors: parameters, gradients or buffers."""

OptState = dict[str, dict[str, Any]]
"""Per parameter name: its optimiser slots (``momentum_buffer``; ``step``, ``exp_avg``,
``exp_avg_sq``). A parameter without an entry has not been updated yet (its first step)."""

GradFn = Callable[[Params, Params, Any], tuple[dict[str, Tensor | None], Tensor, Params]]
"""``(params, buffers, batch) -> (grads, loss, new buffers)``: gradients of the loss with respect
to ``params`` (None for a parameter the loss does not use: it is not updated, as in torch.optim),
the loss (detached; a scalar, or (K,) per client for stacked params) and the buffers after the
forward pass."""

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


@dataclass(frozen=True)
class UpdateRule:
    """The optimiser of ``train.optimizer``, with its learning rate for this call."""

    optimizer: str
    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0

    @classmethod
    def from_settings(cls, settings: TrainSettings, lr: float | None = None) -> UpdateRule:
        """The rule ``settings`` describe (``lr`` overrides ``settings.lr``)."""
        if settings.optimizer not in UPDATES:
            raise ValueError(f"unknown optimizer {settings.optimizer!r}; choose one of {', '.join(UPDATES)}")
        return cls(settings.optimizer, settings.lr if lr is None else lr, settings.momentum, settings.weight_decay)


@dataclass
class StepResult:
    """What one step returns: new parameters, buffers and optimiser state, and the loss."""

    params: Params
    buffers: Params
    state: OptState
    loss: Tensor


def sgd_update(p: Tensor, g: Tensor, slots: dict[str, Any], rule: UpdateRule, inplace: bool = False
               ) -> tuple[Tensor, dict[str, Any]]:
    """torch.optim.SGD's update of one tensor (any shape); returns (new p, new slots). With
    ``inplace`` the new values are written into ``p`` and the slots' tensors (the same arithmetic,
    as torch.optim does it), and those are returned."""
    if rule.weight_decay != 0:
        g = g.add(p, alpha=rule.weight_decay)
    new_slots: dict[str, Any] = {}
    if rule.momentum != 0:
        buf = slots.get("momentum_buffer")
        if buf is None:
            buf = g.detach().clone()
        elif inplace:
            buf.mul_(rule.momentum).add_(g, alpha=1)
        else:
            buf = buf.mul(rule.momentum).add(g, alpha=1)
        new_slots["momentum_buffer"] = buf
        g = buf
    return (p.add_(g, alpha=-rule.lr) if inplace else p.detach().add(g, alpha=-rule.lr)), new_slots


def adam_update(p: Tensor, g: Tensor, slots: dict[str, Any], rule: UpdateRule, inplace: bool = False
                ) -> tuple[Tensor, dict[str, Any]]:
    """torch.optim.Adam's update of one tensor (any shape); returns (new p, new slots);
    ``inplace`` as in `sgd_update`."""
    beta1, beta2 = ADAM_BETAS
    step = slots.get("step", 0) + 1
    if rule.weight_decay != 0:
        g = g.add(p, alpha=rule.weight_decay)
    exp_avg = slots["exp_avg"] if "exp_avg" in slots else torch.zeros_like(p, memory_format=torch.preserve_format)
    exp_avg_sq = slots["exp_avg_sq"] if "exp_avg_sq" in slots else torch.zeros_like(
        p, memory_format=torch.preserve_format)
    if inplace or "exp_avg" not in slots:  # a fresh slot is ours to update in place
        exp_avg.lerp_(g, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    else:
        exp_avg = exp_avg.lerp(g, 1 - beta1)
        exp_avg_sq = exp_avg_sq.mul(beta2).addcmul(g, g, value=1 - beta2)
    step_f = float(step)  # torch.optim keeps the step as a float32 tensor and reads it back with .item()
    step_size = rule.lr / (1 - beta1 ** step_f)
    bias_correction2_sqrt = (1 - beta2 ** step_f) ** 0.5
    denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(ADAM_EPS)
    new_p = p.addcdiv_(exp_avg, denom, value=-step_size) if inplace else p.detach().addcdiv(
        exp_avg, denom, value=-step_size)
    return new_p, {"step": step, "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}


UPDATES: dict[str, Callable[..., tuple[Tensor, dict[str, Any]]]] = {
    "sgd": sgd_update,
    "adam": adam_update,
}
"""``train.optimizer`` name -> the update of one tensor."""


@torch.no_grad()
def apply_update(rule: UpdateRule, params: Mapping[str, Tensor], grads: Mapping[str, Tensor | None],
                 state: OptState, inplace: bool = False) -> tuple[Params, OptState]:
    """New parameters and optimiser state after one step; the inputs are not modified, unless
    ``inplace``: then the new values are written into the given parameter and slot tensors
    (which are returned), as torch.optim does, saving the copies.

    A parameter whose gradient is None keeps its value and its slots (torch.optim skips it).
    """
    update = UPDATES[rule.optimizer]
    new_params: Params = {}
    new_state: OptState = dict(state)
    for name, p in params.items():
        g = grads.get(name)
        if g is None:
            new_params[name] = p
            continue
        new_params[name], new_state[name] = update(p, g, state.get(name, {}), rule, inplace)
    return new_params, new_state


def local_step(grad_fn: GradFn, params: Params, buffers: Params, state: OptState, batch: Any,
               rule: UpdateRule, inplace: bool = False) -> StepResult:
    """One step: the loss and its gradients at ``params`` (``grad_fn``), then the optimiser update.

    Args:
        grad_fn: computes (grads, loss, new buffers) from (params, buffers, batch); the serial
            path differentiates the workspace model's loss with autograd, the batched path runs
            ``torch.func.vmap(torch.func.grad_and_value(client_loss))`` over stacked clients.
        params: the trainable tensors, shape S each (or (K, *S) stacked).
        buffers: non-trainable model state that the forward may update (e.g. running statistics).
        state: the optimiser state before the step (`OptState`).
        batch: whatever ``grad_fn`` reads (images and labels, per-sample weights, ...).
        rule: the optimiser and its learning rate.
        inplace: write the update into ``params`` and ``state``'s tensors (the callers that own
            them: the serial loop, the batched loop's stacked storage) instead of new tensors.
    Returns:
        `StepResult`: new tensors (the inputs are left as they were), or the updated inputs.
    """
    grads, loss, new_buffers = grad_fn(params, buffers, batch)
    new_params, new_state = apply_update(rule, params, grads, state, inplace)
    return StepResult(new_params, new_buffers, new_state, loss)
