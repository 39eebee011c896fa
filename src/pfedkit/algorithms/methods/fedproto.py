"""FedProto (Tan, Long, Liu, Zhou, Lu, Jiang, Zhang, "FedProto: Federated Prototype Learning across
Heterogeneous Clients", AAAI 2022).

Only class prototypes travel: each client keeps its whole model and uploads the mean body
feature of every class it holds; the server averages them into global prototypes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pfedkit.algorithms.protocol import Algorithm, ClientUpdate, Predictor, RoundContext
from pfedkit.algorithms.registry import register_algorithm
from pfedkit.algorithms.toolkit import prototypes as P
from pfedkit.algorithms.toolkit.training import train_epochs
from pfedkit.core.config import param
from pfedkit.core.payload import Payload, clone_payload
from pfedkit.data.client_data import ClientData
from pfedkit.models.split import SplitModel


@dataclass
class FedProtoHParams:
    lam: float = param(1.0, lo=0.0, hi=1e4, doc="weight of the prototype term (the paper's lambda, 'ld' in its code)")
    weighting: str = param("samples", choices=("samples", "clients"),
                           doc="global prototype: sample-weighted mean (paper, Eq. 6) or plain mean over "
                               "clients (authors' code)")
    predict: str = param("prototype", choices=("prototype", "head"),
                         doc="personal prediction: nearest global prototype, or the local model's own head")
    local_classes_only: bool = param(True, doc="prototype prediction considers only the classes of the client's "
                                               "training split")


@register_algorithm
class FedProto(Algorithm[FedProtoHParams]):
    """FedProto.

    Shared: nothing but prototypes. Upload ``proto.means`` (C, d) (mean body feature per class
    of the client's training split, computed after local training in eval mode) and
    ``proto.counts`` (C,) (class counts, so the server knows who holds which class). Server state
    and broadcast: ``proto.means`` (C, d) and ``proto.available`` (C,).
    Personal: the whole model (body and head), in the client state.

    Local loss: ``CE(head(f(x)), y) + lam * MSE(f(x), p_y)`` with ``p_y`` the global prototype of
    the label (no term for classes without a global prototype, i.e. none in round 1).
    Prediction (paper, Sec. "Inference"; authors' ``test_inference_new_het_lt``): the class whose
    global prototype is nearest in squared L2 to the sample's local feature, among the classes
    present in the client's training split (``local_classes_only``) that have a global prototype;
    logits are ``-||f(x) - p_c||^2 / d``. With ``predict="head"`` the local head predicts instead.

    Deviations: prototypes are computed once after training (the code averages the batch
    features seen during the last local epochs); classes no uploading client holds keep their
    previous global prototype under partial participation.
    """

    name = "fedproto"
    shared_prefixes = (P.PREFIX,)
    paper = "Tan et al., FedProto: Federated Prototype Learning across Heterogeneous Clients, AAAI 2022"
    shares = "class prototypes (C x d mean features + C counts); no weights"
    keeps = "the whole model (body and head)"

    def setup(self) -> None:
        self._initial = self.snapshot()

    def init_server(self) -> Payload:
        return P.empty_prototypes(self.num_classes, self.model.feature_dim)

    def init_client(self, data: ClientData) -> Payload:
        return clone_payload(self._initial)

    def local_update(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> ClientUpdate:
        self.load(state)
        targets, available = broadcast[P.MEANS], broadcast[P.AVAILABLE]
        model, lam = self.model, self.hp.lam

        loss_fn = P.prototype_regularised_ce(model, lam, targets, available)

        loss = train_epochs(model, data.x_train, data.y_train, self.train, ctx.generator, loss_fn=loss_fn)
        means, counts = P.model_prototypes(model, data.x_train, data.y_train, self.num_classes)
        return ClientUpdate(upload={P.MEANS: means, P.COUNTS: counts}, weight=data.num_train,
                            state=self.snapshot(), metrics={"train_loss": loss})

    def aggregate(self, server: Payload, updates: list[ClientUpdate], round: int) -> Payload:
        ups = [u.upload for u in updates if u.upload]
        if not ups:
            return server
        means, available = P.aggregate_prototypes([u[P.MEANS] for u in ups], [u[P.COUNTS] for u in ups],
                                                  server[P.MEANS], server[P.AVAILABLE], self.hp.weighting)
        return {**server, P.MEANS: means, P.AVAILABLE: available}

    def personal_predictor(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> Predictor:
        self.load(state)
        self.model.eval()
        if self.hp.predict == "head":
            return self.model
        allowed = broadcast[P.AVAILABLE] > 0
        if self.hp.local_classes_only:
            allowed = allowed & (data.class_counts("train").to(allowed.device) > 0)
        if not bool(allowed.any()):
            return self.model  # no usable global prototype yet (e.g. before round 1)
        return prototype_classifier(self.model, broadcast[P.MEANS], allowed)


def prototype_classifier(model: SplitModel, protos: torch.Tensor, allowed: torch.Tensor) -> Predictor:
    """Nearest-prototype predictor: (B, C, H, W) -> (B, C) logits ``-||f(x) - p_c||^2 / d``;
    classes not ``allowed`` (C,) bool get the most negative finite float."""
    protos = protos.detach().clone()
    allowed = allowed.detach().clone()

    def predict(x: torch.Tensor) -> torch.Tensor:
        z = model.features(x)
        p = protos.to(z)
        d2 = ((z[:, None, :] - p[None]) ** 2).mean(-1)
        return torch.where(allowed.to(z.device)[None], -d2, torch.full_like(d2, torch.finfo(d2.dtype).min))

    return predict
