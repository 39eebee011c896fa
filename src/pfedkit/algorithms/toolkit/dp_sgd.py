"""DP-SGD (Abadi et al., CCS 2016) for local training: Poisson-sampled batches, per-example
gradients clipped to norm C, Gaussian noise of std sigma * C on their sum.

`train_epochs` hands its loop to `DPSGD.run` when called with ``private=DPSGD(...)``: the same
model, trained parameters, loss and optimiser, only the gradient differs. Per step t:

    B_t  = {i : u_i < q},  u_i ~ U(0, 1) iid,   q = min(1, batch_size / n)      (Poisson sampling)
    g_i  = grad of loss_fn(x_i, y_i) w.r.t. the trained parameters (one example)
    g    = (sum_{i in B_t} g_i * min(1, C / ||g_i||) + N(0, sigma^2 C^2 I)) / (q n)

``||g_i||`` is the norm over every trained tensor together; the division is by the expected
batch size, so the step does not reveal |B_t|. An epoch is ``max(1, round(n / batch_size))``
steps (`poisson_schedule`), so ``epochs`` epochs are one sampled Gaussian mechanism of that many
steps for the accountant (`pfedkit.stats.privacy_accounting`). A step whose sample is empty
still adds noise and steps.

Per-example gradients come from ``torch.func``: ``vmap(grad(functional_call(...)))`` over the
batch. The loss is the caller's ``loss_fn`` applied to a batch of one; it may read the model and
tensors held by other objects (``slots``, e.g. pFedGM's navigator anchors), which are swapped for
the per-example copies during the call. Models with BatchNorm cannot be trained this way (a
normalisation over the batch mixes examples): `DPSGD.run` refuses them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap

from pfedkit.algorithms.toolkit.functional_step import OptState, UpdateRule, apply_update
from pfedkit.core.errors import ConfigError
from pfedkit.stats.privacy_accounting import Mechanism

LossFn = Callable[[Tensor, Tensor], Tensor]
Slot = tuple[Any, str]
"""(object, attribute name): a trained tensor held as ``getattr(object, name)`` outside the model."""


def poisson_schedule(n: int, batch_size: int, epochs: int) -> Mechanism:
    """The sampled Gaussian mechanism ``epochs`` DP-SGD epochs over n records make: sample rate
    q = min(1, batch_size / n), ``epochs * max(1, round(n / batch_size))`` steps (0 when n = 0)."""
    if n <= 0 or epochs <= 0:
        return Mechanism(1.0, 0)
    return Mechanism(min(1.0, batch_size / n), epochs * max(1, round(n / batch_size)))


@dataclass
class DPSGD:
    """One DP-SGD configuration for a `train_epochs` call.

    Attributes:
        clip: C, the per-example gradient norm bound.
        noise_multiplier: sigma (0 gives clipped SGD without noise).
        slots: trained tensors that are not parameters of the model (see `Slot`).
        on_release: told the `Mechanism` of every call, once it has run (a privacy ledger).
    """

    clip: float
    noise_multiplier: float
    slots: Sequence[Slot] = ()
    on_release: Callable[[Mechanism], None] | None = field(default=None, repr=False)

    def run(self, model: nn.Module, x: Tensor, y: Tensor, params: list[Tensor], loss_fn: LossFn, rule: UpdateRule,
            epochs: int, batch_size: int, generator: torch.Generator,
            after_step: Callable[[], None] | None = None) -> float:
        """Train ``params`` in place; return the mean per-example loss over the sampled examples.

        Args:
            model: the module ``loss_fn`` reads (its parameters in ``params`` are swapped for
                per-example copies during the gradient computation).
            x: (n, ...) inputs of ``loss_fn``; y: (n,) labels.
            params: the trained tensors, each a parameter of ``model`` or named by ``self.slots``.
            rule: the optimiser (`functional_step.UpdateRule`); it steps with the privatised gradient.
            epochs, batch_size: the `poisson_schedule`.
            generator: randomness of the sampling and the noise (a CPU generator).
            after_step: called after every step.
        """
        if any(isinstance(m, nn.modules.batchnorm._NormBase) for m in model.modules()):
            raise ConfigError("privacy: DP-SGD needs per-example gradients, which BatchNorm mixes; use a model "
                              "without BatchNorm (e.g. model.cnn.norm=none)")
        n = int(y.shape[0])
        mech = poisson_schedule(n, batch_size, epochs)
        named = dict(zip(self._names(model, params), params))
        grads_of = vmap(grad_and_value(self._example_loss(model, loss_fn)), in_dims=(None, 0, 0),
                        randomness="different")
        state: OptState = {}
        total, seen = 0.0, 0
        for _ in range(mech.steps):
            chosen = (torch.rand(n, generator=generator) < mech.sample_rate).nonzero().squeeze(1).to(x.device)
            summed = {k: torch.zeros_like(p) for k, p in named.items()}
            if chosen.numel():
                theta = {k: p.detach() for k, p in named.items()}
                grads, losses = grads_of(theta, x[chosen], y[chosen])  # each (b, *p.shape)
                norms = torch.sqrt(sum(g.reshape(g.shape[0], -1).pow(2).sum(1) for g in grads.values()))
                scale = (self.clip / norms.clamp_min(1e-12)).clamp(max=1.0)
                summed = {k: torch.einsum("b,b...->...", scale, grads[k]) for k in named}
                total += float(losses.sum())
                seen += int(chosen.numel())
            noisy = {k: (s + self._noise(s, generator)) / (mech.sample_rate * n) for k, s in summed.items()}
            new, state = apply_update(rule, named, noisy, state)
            with torch.no_grad():
                for k, p in named.items():
                    p.copy_(new[k])
            if after_step is not None:
                after_step()
        if self.on_release is not None:
            self.on_release(mech)
        return total / seen if seen else float("nan")

    def _noise(self, like: Tensor, generator: torch.Generator) -> Tensor:
        """N(0, (sigma C)^2) of ``like``'s shape, drawn on the CPU from ``generator``."""
        if self.noise_multiplier == 0:
            return torch.zeros_like(like)
        noise = torch.randn(like.shape, generator=generator, dtype=like.dtype)
        return (self.noise_multiplier * self.clip) * noise.to(like.device)

    def _names(self, model: nn.Module, params: list[Tensor]) -> list[str]:
        """A name per trained tensor: ``model.<parameter name>`` or ``slot.<i>``."""
        by_id = {id(p): f"model.{n}" for n, p in model.named_parameters()}
        slots = {id(getattr(obj, attr)): f"slot.{i}" for i, (obj, attr) in enumerate(self.slots)}
        names = []
        for p in params:
            name = by_id.get(id(p), slots.get(id(p)))
            if name is None:
                raise ValueError("DPSGD: a trained tensor is neither a parameter of the model nor one of the slots")
            names.append(name)
        return names

    def _example_loss(self, model: nn.Module, loss_fn: LossFn) -> Callable[[dict[str, Tensor], Tensor, Tensor], Tensor]:
        """(theta, x_i, y_i) -> loss of the one example with the trained tensors set to theta."""
        holder = _LossModule(model, loss_fn)
        slots = list(self.slots)

        def example_loss(theta: dict[str, Tensor], xi: Tensor, yi: Tensor) -> Tensor:
            module_part = {k: v for k, v in theta.items() if k.startswith("model.")}
            slot_part = {int(k.split(".")[1]): v for k, v in theta.items() if k.startswith("slot.")}
            with _swapped(slots, slot_part):
                return functional_call(holder, module_part, (xi[None], yi[None]))

        return example_loss


class _LossModule(nn.Module):
    """Holds the model as a submodule so that ``functional_call`` swaps its parameters while the
    caller's loss (a closure over the same model) runs."""

    def __init__(self, model: nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.loss_fn(x, y)


@contextlib.contextmanager
def _swapped(slots: list[Slot], values: dict[int, Tensor]) -> Iterator[None]:
    """Set ``getattr(obj, attr)`` of the numbered slots to ``values`` for the block."""
    saved = {i: getattr(*slots[i]) for i in values}
    try:
        for i, v in values.items():
            setattr(slots[i][0], slots[i][1], v)
        yield
    finally:
        for i, v in saved.items():
            setattr(slots[i][0], slots[i][1], v)
