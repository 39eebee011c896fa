"""FedALA (Zhang, Hua, Wang, Song, Xue, Ma, Guan, "FedALA: Adaptive Local Aggregation for
Personalized Federated Learning", AAAI 2023).

FedAvg on the server; on the client, the received global model is not simply copied over the
local one. Adaptive Local Aggregation (ALA) takes the lower layers from the global model and
mixes the top layers element-wise:

    theta_hat = theta_local + (theta_global - theta_local) * W,      W in [0, 1] (same shape)

learning W by gradient descent on a random fraction of the local training data before the
usual local training starts from theta_hat.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pfedkit.algorithms.protocol import Algorithm, ClientUpdate, Predictor, RoundContext
from pfedkit.algorithms.registry import register_algorithm
from pfedkit.algorithms.toolkit.training import batches, train_epochs
from pfedkit.core.config import param
from pfedkit.core.payload import Payload
from pfedkit.data.client_data import ClientData

WEIGHT = "ala.w."  # state keys "ala.w.<state_dict key>": the element-wise weights W
STARTED = "ala.started"  # state key: 1.0 once the first (run-to-convergence) ALA has happened


@dataclass
class FedALAHParams:
    eta: float = param(1.0, lo=0.0, hi=1e4, lo_open=True, doc="learning rate of the ALA weights W")
    rand_percent: float = param(80.0, lo=0.0, hi=100.0, lo_open=True,
                                doc="percent of local training data used to learn W (s)")
    extra_body_tensors: int = param(0, lo=0, hi=1000,
                                    doc="besides the head, also adapt the last k parameter tensors of the body "
                                        "(p > 1 layer)")
    threshold: float = param(0.1, lo=0.0, hi=1e3,
                             doc="first ALA: stop when the std of the last losses falls below this")
    num_pre_loss: int = param(10, lo=1, hi=1000, doc="first ALA: number of recent epoch losses whose std is checked")
    max_start_epochs: int = param(50, lo=1, hi=100_000, doc="first ALA: cap on epochs (the paper has no cap)")


@register_algorithm
class FedALA(Algorithm[FedALAHParams]):
    """FedALA.

    Shared: every parameter (the client uploads its whole model after local training; the server
    takes the sample-weighted average). Personal (client state): the client's local model (all
    state_dict keys), the ALA weights ``ala.w.<key>`` (one tensor per adapted parameter, same
    shape, values in [0, 1]) and ``ala.started``.

    Adapted ("top") parameters: the head's parameters as the model defines them (the authors'
    default p = 2 tensors = weight and bias of the last layer) plus, optionally, the last
    ``extra_body_tensors`` parameter tensors of the body. Everything else (lower parameters and
    all buffers) is taken from the global model.

    ALA on each participation after the first (the first just starts from the global model,
    as the authors' code skips ALA while local equals global): W starts at 1 (then persists);
    on ``rand_percent`` % of the training data (a random subset; the code takes a random
    contiguous slice), for each batch: ``W <- clip(W - eta * dL/dtheta_hat * (theta_g - theta_l), 0, 1)``
    and theta_hat is recomputed. The first ALA repeats epochs until the std of the last
    ``num_pre_loss`` epoch losses is below ``threshold`` (capped at ``max_start_epochs``); later
    ones run one epoch. Then ``train.local_epochs`` epochs of plain cross-entropy on all data.

    Personal model = the local model after the client's latest local update (the authors
    evaluate right after ALA, which needs gradient steps and so is not allowed at evaluation
    here). A client that never trained uses the global model.
    """

    name = "fedala"
    key_prefix = "ala."
    paper = "Zhang et al., FedALA: Adaptive Local Aggregation for Personalized Federated Learning, AAAI 2023"
    shares = "the whole model"
    keeps = "local model + element-wise ALA weights of the head"

    def setup(self) -> None:
        params = [n for n, _ in self.model.named_parameters()]
        head = [n for n in params if n in set(self.keys("head"))]
        body = [n for n in params if n in set(self.keys("body"))]
        k = self.hp.extra_body_tensors
        self.top_keys: list[str] = (body[len(body) - k:] if k > 0 else []) + head
        """Names of the adapted parameters, in model order."""

    # ----- ALA -----------------------------------------------------------------------------
    def adaptive_local_aggregation(self, global_: Payload, local: Payload, weights: Payload | None,
                                   data: ClientData, generator: torch.Generator, started: bool
                                   ) -> tuple[Payload, Payload, dict[str, float]]:
        """Run ALA and leave theta_hat in the workspace model.

        Args:
            global_: received global model (state_dict keys). local: the client's local model.
            weights: ``{key: W}`` for the top keys (None: start at ones).
            started: False for the first ALA (run until the loss settles), True afterwards.
        Returns:
            (theta_hat as a state_dict payload, new weights ``{key: W}``, metrics).
        """
        self.load(global_)
        named = dict(self.model.named_parameters())
        top = [named[k] for k in self.top_keys]
        glob = [global_[k].to(p) for k, p in zip(self.top_keys, top)]
        loc = [local[k].to(p) for k, p in zip(self.top_keys, top)]
        w = [torch.ones_like(p) if weights is None else weights[k].to(p).clone() for k, p in zip(self.top_keys, top)]

        def mix() -> None:
            with torch.no_grad():
                for p, g, l_, wt in zip(top, glob, loc, w):
                    p.copy_(l_ + (g - l_) * wt)

        mix()
        n = data.num_train
        m = max(1, int(n * self.hp.rand_percent / 100.0))
        subset = torch.randperm(n, generator=generator)[:m].to(data.x_train.device)
        x, y = data.x_train[subset], data.y_train[subset]
        self.model.train()
        losses: list[float] = []
        epochs = 0
        while True:
            last = float("nan")
            for idx in batches(m, self.train.batch_size, generator):
                idx = idx.to(x.device)
                loss = F.cross_entropy(self.model(x[idx]), y[idx])
                grads = torch.autograd.grad(loss, top)
                with torch.no_grad():
                    for wt, gr, g, l_ in zip(w, grads, glob, loc):
                        wt.sub_(self.hp.eta * gr * (g - l_)).clamp_(0.0, 1.0)
                mix()
                last = float(loss.detach())
            losses.append(last)
            epochs += 1
            if started or epochs >= self.hp.max_start_epochs:
                break
            if len(losses) > self.hp.num_pre_loss and np.std(losses[-self.hp.num_pre_loss:]) < self.hp.threshold:
                break
        # Forward passes in train mode may have moved buffers (e.g. BatchNorm): lower part = global.
        self.load({k: v for k, v in global_.items() if k not in set(self.top_keys)})
        mixed = self.snapshot()
        return mixed, {k: wt.detach().clone() for k, wt in zip(self.top_keys, w)}, {"ala_epochs": float(epochs),
                                                                                     "ala_loss": losses[-1]}

    # ----- protocol ------------------------------------------------------------------------
    def local_update(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> ClientUpdate:
        metrics: dict[str, float] = {}
        has_local = all(k in state for k in self._state_refs)
        weights: Payload | None = None
        if has_local:
            has_w = all(WEIGHT + k in state for k in self.top_keys)
            old_w = {k: state[WEIGHT + k] for k in self.top_keys} if has_w else None
            started = bool(state.get(STARTED, torch.zeros(1)).item() > 0)
            _, weights, metrics = self.adaptive_local_aggregation(broadcast, state, old_w, data, ctx.generator, started)
        else:
            self.load(broadcast)
        metrics["train_loss"] = train_epochs(self.model, data.x_train, data.y_train, self.train, ctx.generator)
        new_state = self.snapshot()
        if weights is not None:
            new_state.update({WEIGHT + k: v for k, v in weights.items()})
            new_state[STARTED] = torch.ones(1)
        return ClientUpdate(upload=self.snapshot(), weight=data.num_train, state=new_state, metrics=metrics)

    def personal_predictor(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> Predictor:
        self.load(broadcast)
        self.load(state)
        self.model.eval()
        return self.model
