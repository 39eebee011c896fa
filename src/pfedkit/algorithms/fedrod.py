"""FedRoD: a shared body and generic head trained with the balanced-softmax loss, plus a personal
head whose logits are added to the generic ones."""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pfedkit.algorithms.base import Algorithm, ClientUpdate, Predictor, RoundContext, TrainSettings
from pfedkit.algorithms.registry import register_algorithm
from pfedkit.algorithms.training import train_epochs
from pfedkit.core.payload import Payload, clone_payload
from pfedkit.data.client_data import ClientData
from pfedkit.models.split import SplitModel

PERSONAL = "personal_head."
"""Prefix of the personal head's tensors in a client's state."""


def balanced_softmax_loss(logits: torch.Tensor, y: torch.Tensor, class_counts: torch.Tensor) -> torch.Tensor:
    """Balanced softmax cross-entropy (Ren et al., NeurIPS 2020): CE(logits + log n_c, y).

    Args:
        logits: (B, K) generic-head logits.
        y: (B,) labels.
        class_counts: (K,) training-label counts of the client; absent classes get a count of
            1e-8 (log about -18) instead of zero, to keep the loss finite.
    Returns:
        () mean loss.
    """
    log_prior = torch.log(class_counts.to(logits.dtype).clamp_min(1e-8))
    return F.cross_entropy(logits + log_prior, y)


@register_algorithm
class FedRoD(Algorithm):
    """FedRoD (Chen, Chao, "On Bridging Generic and Personalized Federated Learning for Image
    Classification", ICLR 2022), the linear-personal-head variant.

    Shared: the body and the generic head (every model tensor), averaged by sample count. The
    generic head is trained with the balanced-softmax loss on the client's label counts, which
    makes it an estimate of the class-balanced (generic) classifier.
    Personal: a second head of the same architecture (``personal_head.*`` keys of the state),
    trained with CE(generic logits + personal logits) on detached features and detached generic
    logits, so it changes neither the body nor the generic head. Both losses use the same
    minibatch and step together (their gradients touch disjoint parameters).
    Personal prediction: generic head(body(x)) + personal head(body(x)).
    The personal head starts as a copy of the initial head whose last parametrised layer is
    zeroed, so an untrained client's personal prediction equals the generic one.
    Hyper-parameters: none beyond ``train.*``.
    """

    name = "fedrod"

    shares = "body + generic head (balanced softmax)"

    keeps = "personal head added to the generic logits"
    paper = "Chen, Chao, On Bridging Generic and Personalized Federated Learning for Image Classification, ICLR 2022"

    def __init__(self, model: SplitModel, hp: Any, train: TrainSettings, num_classes: int, seed: int = 0) -> None:
        super().__init__(model, hp, train, num_classes, seed)
        self.personal_head: nn.Module = copy.deepcopy(model.head)  # one extra module, reused by every client
        with torch.no_grad():
            last = [m for m in self.personal_head.modules() if list(m.parameters(recurse=False))][-1]
            for p in last.parameters(recurse=False):
                p.zero_()
        self._initial_personal = {PERSONAL + k: t.detach().clone() for k, t in self.personal_head.state_dict().items()}

    def init_client(self, data: ClientData) -> Payload:
        return clone_payload(self._initial_personal)

    def local_update(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> ClientUpdate:
        self.load(broadcast)
        self._load_personal_head(state)
        counts = data.class_counts("train").to(data.y_train.device)
        model, phead = self.model, self.personal_head
        phead.train()
        generic_losses: list[torch.Tensor] = []
        personal_losses: list[torch.Tensor] = []

        def loss_fn(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            feats = model.features(xb)
            generic = model.head(feats)
            loss_g = balanced_softmax_loss(generic, yb, counts)
            loss_p = F.cross_entropy(generic.detach() + phead(feats.detach()), yb)
            generic_losses.append(loss_g.detach())
            personal_losses.append(loss_p.detach())
            return loss_g + loss_p

        train_epochs(model, data.x_train, data.y_train, self.train, ctx.generator,
                     params=list(model.parameters()) + list(phead.parameters()), loss_fn=loss_fn)
        new_state = {PERSONAL + k: t.detach().clone() for k, t in phead.state_dict().items()}
        metrics = {"train_loss": _mean(generic_losses), "personal_loss": _mean(personal_losses)}
        return ClientUpdate(upload=self.snapshot(), weight=data.num_train, state=new_state, metrics=metrics)

    def personal_predictor(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> Predictor:
        """x (B, C, H, W) -> (B, K) generic + personal logits."""
        self.load(broadcast)
        self._load_personal_head(state)
        model, phead = self.model, self.personal_head
        model.eval()
        phead.eval()

        def predict(x: torch.Tensor) -> torch.Tensor:
            feats = model.features(x)
            return model.head(feats) + phead(feats)

        return predict

    def _load_personal_head(self, state: Payload) -> None:
        """Copy the client's personal head (or the initial one) into the personal-head module,
        placed on the workspace model's device."""
        self.personal_head.to(next(self.model.parameters()).device)
        with torch.no_grad():
            for k, t in self.personal_head.state_dict().items():
                t.copy_(state.get(PERSONAL + k, self._initial_personal[PERSONAL + k]))


def _mean(values: list[torch.Tensor]) -> float:
    return float(torch.stack(values).mean()) if values else float("nan")
