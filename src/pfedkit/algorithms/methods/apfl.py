"""APFL: each client mixes a local model v and the global model w with a learnable alpha,
personal model = alpha * v + (1 - alpha) * w."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from pfedkit.algorithms.protocol import Algorithm, ClientUpdate, Predictor, RoundContext
from pfedkit.algorithms.registry import register_algorithm
from pfedkit.algorithms.toolkit.training import train_epochs
from pfedkit.core.config import param
from pfedkit.core.payload import Payload
from pfedkit.data.client_data import ClientData

LOCAL = "apfl.local."
"""Prefix of the local model's tensors in a client's state (``apfl.local.body.0.weight``, ...)."""
ALPHA = "apfl.alpha"
"""Key of the client's mixing weight, a () float tensor in [0, 1]."""


@dataclass
class APFLHParams:
    alpha_init: float = param(0.5, lo=0.0, hi=1.0, doc="initial mixing weight of the local model")
    adaptive: bool = param(True, doc="learn alpha by gradient descent (APFL) or keep it fixed")
    alpha_lr_scale: float = param(1.0, lo=0.0, hi=100.0, doc="alpha's step size = scale * train.lr")


@register_algorithm
class APFL(Algorithm[APFLHParams]):
    """APFL (Deng, Kamani, Mahdavi, "Adaptive Personalized Federated Learning", arXiv:2003.13461,
    2020).

    Shared: the whole global model w, trained locally by plain SGD on cross-entropy from the
    broadcast and averaged, as in FedAvg. Personal: a whole local model v (``local.*`` keys of the
    state) and the mixing weight alpha (``apfl.alpha``). On every minibatch, with
    v_bar = alpha * v + (1 - alpha) * w (parameter mixing, w taken before its step):
    w <- w - lr * grad_w CE(w);  v <- v - lr * grad_v CE(v_bar);
    alpha <- clip(alpha - alpha_lr * grad_alpha CE(v_bar), 0, 1), where
    grad_alpha = <v - w, grad CE(v_bar)>. The personal model is v_bar (buffers such as BatchNorm
    statistics come from v). A client that has not trained yet has v = w and alpha = alpha_init.
    Defaults: alpha_init 0.5 (the authors' code), alpha learned with the model's step size.
    """

    name = "apfl"
    key_prefix = "apfl."
    shares = "the whole global model"
    keeps = "a local model and the mixing weight alpha"
    paper = "Deng, Kamani, Mahdavi, Adaptive Personalized Federated Learning, arXiv:2003.13461, 2020"

    def local_update(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> ClientUpdate:
        self.load(broadcast)
        device = next(self.model.parameters()).device
        names = [n for n, _ in self.model.named_parameters()]
        w = dict(self.model.named_parameters())
        local = self._local_model(state)
        v = {n: nn.Parameter(local[n]) for n in names}
        v_buffers = {k: t for k, t in local.items() if k not in v}
        alpha = torch.tensor(float(state[ALPHA]) if ALPHA in state else self.hp.alpha_init,
                             device=device, requires_grad=self.hp.adaptive)
        alpha_lr = self.train.lr * self.hp.alpha_lr_scale
        global_losses: list[torch.Tensor] = []
        personal_losses: list[torch.Tensor] = []

        def loss_fn(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            loss_w = F.cross_entropy(self.model(xb), yb)
            mixed = {n: alpha * v[n] + (1 - alpha) * w[n].detach() for n in names}
            loss_v = F.cross_entropy(functional_call(self.model, {**mixed, **v_buffers}, (xb,)), yb)
            global_losses.append(loss_w.detach())
            personal_losses.append(loss_v.detach())
            return loss_w + loss_v  # disjoint gradients: w from loss_w; v, alpha from loss_v

        def alpha_step() -> None:
            if alpha.grad is not None:
                with torch.no_grad():
                    alpha.sub_(alpha_lr * alpha.grad).clamp_(0.0, 1.0)
                alpha.grad = None

        train_epochs(self.model, data.x_train, data.y_train, self.train, ctx.generator,
                     params=list(w.values()) + list(v.values()), loss_fn=loss_fn, after_step=alpha_step)
        new_state = {LOCAL + k: t.detach().clone() for k, t in {**v, **v_buffers}.items()}
        new_state[ALPHA] = alpha.detach().clone()
        metrics = {"train_loss": _mean(global_losses), "personal_loss": _mean(personal_losses),
                   "alpha": float(alpha.detach())}
        return ClientUpdate(upload=self.snapshot(), weight=data.num_train, state=new_state, metrics=metrics)

    def personal_predictor(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> Predictor:
        """The mixed model alpha * v + (1 - alpha) * w, loaded into the workspace model."""
        self.load(broadcast)
        if ALPHA in state:
            self.load(self.mixed_weights(state))
        self.model.eval()
        return self.model

    def mixed_weights(self, state: Payload) -> Payload:
        """state_dict of v_bar = alpha * v + (1 - alpha) * w, with w the workspace model's current
        parameters and buffers taken from v."""
        alpha = float(state[ALPHA])
        out: Payload = {}
        with torch.no_grad():
            params = dict(self.model.named_parameters())
            for key in self._state_refs:
                v = state[LOCAL + key]
                out[key] = alpha * v.to(params[key].device) + (1 - alpha) * params[key] if key in params else v
        return out

    def _local_model(self, state: Payload) -> Payload:
        """Copies of v's tensors on the workspace's device, keyed like the model; v = w (the
        workspace) if the client has no local model yet.

        The copies take the workspace tensors' memory layout (channels-last for the CNN), whatever
        layout the stored state has (the Flower codec returns contiguous tensors): a convolution
        with a weight in another layout takes another kernel, which rounds differently on some
        CPUs (AVX-512), and a run over Flower would no longer equal the simulator's."""
        workspace = self._state_refs
        if ALPHA not in state:
            return {k: t.detach().clone() for k, t in workspace.items()}
        return {k: torch.empty_like(t).copy_(state[LOCAL + k]) for k, t in workspace.items()}


def _mean(values: list[torch.Tensor]) -> float:
    return float(torch.stack(values).mean()) if values else float("nan")
