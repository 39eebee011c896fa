"""The batched path: the sampled clients of a round trained together, as one stacked model.

Every trainable tensor gets a leading client dimension K. One step evaluates every active
client's loss on its own minibatch with ``torch.func.vmap(torch.func.grad_and_value(loss))``
(the model runs through ``torch.func.functional_call``; vmap turns K convolutions with K weight
sets into one grouped convolution and K matrix products into one batched product), then applies
the same optimiser update as the serial path (`functional_step.local_step`), each client with
its own momentum / Adam moments.

Equal to the serial path, client by client:
  * the same minibatches: each client's permutations are drawn from its own generator, epoch
    after epoch, exactly as `training.batches` draws them;
  * its own number of steps: clients are ordered by size (largest first), so the clients still
    training at step t are a prefix of the stack; the others are left out of the step (masked):
    their parameters and optimiser state stay as they are;
  * unequal last batches: every step's minibatch is padded to the batch size with a weight-0
    sample, and the loss is the weighted mean, which equals the mean over the real samples.
The differences are rounding only (grouped vs single kernels, summation order);
tests/algorithms/test_batched.py bounds them.

Batch-norm and dropout layers are refused (`batching_blocker`): stacked clients would need
per-client running statistics and random masks, and padding rows would enter batch statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap

from pfedkit.algorithms.protocol import RoundContext
from pfedkit.algorithms.toolkit.functional_step import OptState, Params, UpdateRule, local_step
from pfedkit.core.config import TrainSettings
from pfedkit.data.client_data import ClientData

ClientLoss = Callable[[dict[str, Tensor], Tensor, Tensor, Tensor], Tensor]
"""``(tensors, x, y, w) -> loss`` of ONE client, a scalar: ``tensors`` maps names to that
client's tensors (its trainable ones, its own constants and the constants shared by all clients),
``x`` (B, ...) its minibatch, ``y`` (B,) the labels and ``w`` (B,) per-sample weights (1 for a
real sample, 0 for padding). Written for one client; vmap runs it for all of them."""

_MODE_DEPENDENT = (nn.modules.batchnorm._NormBase, nn.modules.dropout._DropoutNd)


def batching_blocker(model: nn.Module) -> str | None:
    """Why ``model`` cannot be trained with clients stacked, or None when it can."""
    bad = sorted({type(m).__name__ for m in model.modules() if isinstance(m, _MODE_DEPENDENT)})
    if bad:
        return (f"the model has {', '.join(bad)} layers (their batch statistics or random masks would mix "
                "stacked clients and padding)")
    return None


def weighted_cross_entropy(logits: Tensor, y: Tensor, w: Tensor) -> Tensor:
    """sum_i w_i CE(logits_i, y_i) / sum_i w_i: logits (B, C), y (B,), w (B,) -> scalar."""
    return (F.cross_entropy(logits, y, reduction="none") * w).sum() / w.sum()


def model_call(module: nn.Module, tensors: Mapping[str, Tensor], x: Tensor, prefix: str = "") -> Tensor:
    """``module(x)`` with its parameters and buffers taken from ``tensors``.

    ``prefix`` is the module's name inside the workspace model (``"body."``, ``"head."``, or ""
    for the whole model): ``tensors`` holds workspace ``state_dict`` names, and may hold other
    names, which are ignored. A missing name falls back to the module's own tensor.
    """
    own = {name[len(prefix):]: t for name, t in tensors.items() if name.startswith(prefix)}
    names = {n for n, _ in module.named_parameters()} | {n for n, _ in module.named_buffers()}
    return functional_call(module, {n: t for n, t in own.items() if n in names}, (x,), strict=False)


def stack_payloads(payloads: list[Mapping[str, Tensor]], keys: list[str], device: torch.device) -> dict[str, Tensor]:
    """``{key: (K, *shape)}`` of the clients' tensors under ``keys`` (float32 on ``device``); a
    tensor every client shares (the broadcast) is expanded, not copied."""
    out: dict[str, Tensor] = {}
    for key in keys:
        first = payloads[0][key]
        if all(p[key] is first for p in payloads):
            t = first.to(device)
            out[key] = t.unsqueeze(0).expand(len(payloads), *t.shape)
        else:
            out[key] = torch.stack([p[key].to(device) for p in payloads])
    return out


def unstack(stacked: Mapping[str, Tensor], count: int) -> list[dict[str, Tensor]]:
    """The inverse of `stack_payloads`: one dict of (own, contiguous) copies per client."""
    return [{key: t[k].clone() for key, t in stacked.items()} for k in range(count)]


@dataclass
class ClientRows:
    """The training rows of K clients in one tensor: client k's are ``x[starts[k] : starts[k] + counts[k]]``.

    Attributes:
        x: (N, ...) inputs (images or features); y: (N,) labels.
        starts, counts: (K,) first row and number of rows of each client.
    """

    x: Tensor
    y: Tensor
    starts: list[int]
    counts: list[int]

    @classmethod
    def of_clients(cls, datas: list[ClientData]) -> ClientRows:
        """The clients' training splits: read in place from their common `TrainPack` when the
        engine packed them (no copy), else concatenated."""
        pack = datas[0].train_pack if datas else None
        if pack is not None and all(d.train_pack is pack for d in datas):
            return cls(pack.x, pack.y, [pack.starts[d.client_id] for d in datas], [d.num_train for d in datas])
        return cls.of_tensors([d.x_train for d in datas], [d.y_train for d in datas])

    @classmethod
    def of_tensors(cls, xs: list[Tensor], ys: list[Tensor]) -> ClientRows:
        """Per-client tensors (e.g. features computed this round), concatenated."""
        counts = [int(y.shape[0]) for y in ys]
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int).tolist() if counts else []
        return cls(torch.cat(xs), torch.cat(ys), starts, counts)


@dataclass
class Schedule:
    """Every step's minibatches of K clients ordered by size (largest first).

    Attributes:
        rows: (S, K, B) int64 rows of `ClientRows` (padding repeats a real row of the client).
        weight: (S, K, B) float32, 1 for a real sample, 0 for padding.
        active: (S,) how many clients (a prefix of the order) take step s.
        steps: (K,) steps of each client.
    """

    rows: Tensor
    weight: Tensor
    active: list[int]
    steps: list[int]


def build_schedule(starts: list[int], counts: list[int], batch_size: int, epochs: int,
                   generators: list[torch.Generator], device: torch.device) -> Schedule:
    """The minibatches of clients already ordered by size, drawn from their generators as the
    serial path draws them (one ``randperm`` per epoch, cut into ``batch_size`` slices)."""
    per_epoch = [-(-n // batch_size) for n in counts]
    steps = [epochs * s for s in per_epoch]
    total = max(steps, default=0)
    rows = np.zeros((total, len(counts), batch_size), dtype=np.int64)
    weight = np.zeros((total, len(counts), batch_size), dtype=np.float32)
    for k, (start, n, gen) in enumerate(zip(starts, counts, generators)):
        if n == 0:
            continue
        padded = per_epoch[k] * batch_size
        for e in range(epochs):
            perm = torch.randperm(n, generator=gen).numpy()
            block = np.full(padded, perm[0], dtype=np.int64)
            block[:n] = perm
            mask = np.zeros(padded, dtype=np.float32)
            mask[:n] = 1.0
            s0 = e * per_epoch[k]
            rows[s0:s0 + per_epoch[k], k] = (block + start).reshape(per_epoch[k], batch_size)
            weight[s0:s0 + per_epoch[k], k] = mask.reshape(per_epoch[k], batch_size)
    active = [int(np.count_nonzero(np.asarray(steps) > s)) for s in range(total)]
    return Schedule(torch.from_numpy(rows).to(device), torch.from_numpy(weight).to(device), active, steps)


def train_together(
    loss: ClientLoss,
    trainable: Mapping[str, Tensor],
    rows: ClientRows,
    generators: list[torch.Generator],
    settings: TrainSettings,
    per_client: Mapping[str, Tensor] | None = None,
    shared: Mapping[str, Tensor] | None = None,
    epochs: int | None = None,
    lr: float | None = None,
) -> tuple[dict[str, Tensor], Tensor]:
    """Train K clients together; the batched counterpart of `training.train_epochs`.

    Args:
        loss: one client's loss (`ClientLoss`); every trainable tensor must enter it.
        trainable: (K, *shape) starting values, one row per client (not modified).
        rows: the clients' training rows (`ClientRows`), in the same client order.
        generators: each client's generator (its ``RoundContext.generator``), advanced as the
            serial path advances it.
        settings: batch size, epochs, optimiser; ``epochs`` and ``lr`` override theirs.
        per_client: (K, ...) constants of each client (e.g. its personal means).
        shared: constants every client uses as they are (e.g. the broadcast weights).
    Returns:
        (trained tensors, (K, *shape) each; mean loss over each client's steps, (K,), NaN for
        a client without training rows).
    """
    per_client, shared = dict(per_client or {}), dict(shared or {})
    k_clients = len(generators)
    device = next(iter(trainable.values())).device
    order = sorted(range(k_clients), key=lambda k: -rows.counts[k])  # stable: ties keep the caller's order
    perm = torch.tensor(order, device=device)
    inverse = torch.argsort(perm)
    epochs = settings.local_epochs if epochs is None else epochs
    schedule = build_schedule([rows.starts[k] for k in order], [rows.counts[k] for k in order],
                              settings.batch_size, epochs, [generators[k] for k in order], device)
    params = {name: t.index_select(0, perm).contiguous() for name, t in trainable.items()}
    constants = {name: t.index_select(0, perm) for name, t in per_client.items()}
    slots: dict[str, dict[str, Tensor]] = {}
    loss_sum = torch.zeros(k_clients, device=device)
    rule = UpdateRule.from_settings(settings, lr)
    grad_fn = _stacked_grads(loss, shared)
    feature_shape = rows.x.shape[1:]
    with torch.enable_grad():
        for s, m in enumerate(schedule.active):
            idx = schedule.rows[s, :m].reshape(-1)
            batch = ({name: t[:m] for name, t in constants.items()},
                     rows.x.index_select(0, idx).view(m, settings.batch_size, *feature_shape),
                     rows.y.index_select(0, idx).view(m, settings.batch_size), schedule.weight[s, :m])
            state: OptState = {name: {**{slot: t[:m] for slot, t in sl.items()}, "step": s} for name, sl in slots.items()}
            # in place: the update writes into the stack's first m rows (views), no copy back
            step = local_step(grad_fn, {name: t[:m] for name, t in params.items()}, {}, state, batch, rule,
                              inplace=True)
            if s == 0:  # the optimiser's slots appear at the first step: give them the stack's shape
                for name, new in step.state.items():
                    for slot, value in new.items():
                        if isinstance(value, Tensor):
                            slots.setdefault(name, {})[slot] = torch.zeros_like(params[name])
                            slots[name][slot][:m] = value
            loss_sum[:m] += step.loss
    steps = torch.tensor(schedule.steps, device=device, dtype=loss_sum.dtype)
    mean_loss = torch.where(steps > 0, loss_sum / steps.clamp_min(1), torch.full_like(loss_sum, float("nan")))
    return {name: t.index_select(0, inverse) for name, t in params.items()}, mean_loss.index_select(0, inverse)


def train_round_together(loss: ClientLoss, payloads: list[Mapping[str, Tensor]], keys: list[str],
                         datas: list[ClientData], ctxs: list[RoundContext], settings: TrainSettings,
                         **options: Any) -> tuple[dict[str, Tensor], Tensor]:
    """`train_together` for a round's clients: the ``keys`` of each client's payload stacked as
    the trainable tensors ((K, ...) on the clients' device), each client's training rows and its
    round generator; ``options`` (per_client, shared, epochs, lr) pass through."""
    return train_together(loss, stack_payloads(payloads, keys, ctxs[0].device), ClientRows.of_clients(datas),
                          [c.generator for c in ctxs], settings, **options)


def _stacked_grads(loss: ClientLoss, shared: dict[str, Tensor]):  # noqa: ANN202 (a functional_step.GradFn)
    """The batched path's gradient function: per-client gradients of ``loss`` by vmap over the
    leading client dimension of (params, per-client constants, x, y, w)."""

    def one_client(params: dict[str, Tensor], constants: dict[str, Tensor], shared_: dict[str, Tensor],
                   x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        return loss({**shared_, **constants, **params}, x, y, w)

    batched = vmap(grad_and_value(one_client), in_dims=(0, 0, None, 0, 0, 0))

    def grad_fn(params: Params, buffers: Params, batch: tuple):  # noqa: ANN202
        constants, x, y, w = batch
        grads, value = batched(params, constants, shared, x, y, w)
        return grads, value.detach(), buffers

    return grad_fn


def parameter_names(model: nn.Module, keys: list[str] | None = None) -> list[str]:
    """Names of the model's parameters (all, or those among the ``state_dict`` ``keys``), in
    registration order; buffers are left out."""
    wanted = None if keys is None else set(keys)
    return [n for n, _ in model.named_parameters() if wanted is None or n in wanted]


def constants_of(payloads: list[Mapping[str, Tensor]], keys: list[str], device: torch.device
                 ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(per-client, shared) constants under ``keys``: a key whose tensor is the same object for
    every client (the broadcast) is shared, the others are stacked (K, ...)."""
    per_client: dict[str, Tensor] = {}
    shared: dict[str, Tensor] = {}
    for key in keys:
        first = payloads[0][key]
        if all(p[key] is first for p in payloads):
            shared[key] = first.to(device)
        else:
            per_client[key] = torch.stack([p[key].to(device) for p in payloads])
    return per_client, shared


def cross_entropy_loss(model: nn.Module, prefix: str = "") -> ClientLoss:
    """The default local loss for the batched path: weighted cross-entropy of ``model`` (the
    workspace model, or its ``head`` with ``prefix="head."`` on features)."""

    def loss(t: dict[str, Tensor], x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        return weighted_cross_entropy(model_call(model, t, x, prefix), y, w)

    return loss
