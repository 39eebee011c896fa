"""FedPer: a shared body (base layers) averaged by FedAvg, a personal head per client."""

from __future__ import annotations

from pfedkit.algorithms.protocol import NoHParams
from pfedkit.algorithms.registry import register_algorithm
from pfedkit.algorithms.toolkit.partial_sharing import PartialSharing


@register_algorithm
class FedPer(PartialSharing[NoHParams]):
    """FedPer (Arivazhagan, Aggarwal, Singh, Choudhary, "Federated Learning with Personalization
    Layers", arXiv:1912.00818, 2019).

    Shared: the body (every ``body.*`` tensor of the model), uploaded and sample-weighted averaged.
    Personal: the head (every ``head.*`` tensor), kept in the client's state; all clients start
    from the same initial head. Local update: ``train.local_epochs`` epochs of cross-entropy over
    body and head together (the paper's joint update). Hyper-parameters: none beyond ``train.*``.
    """

    name = "fedper"
    shares = "body"
    keeps = "head"
    paper = "Arivazhagan et al., Federated Learning with Personalization Layers, arXiv:1912.00818, 2019"
    batched = True

    def personal_keys(self) -> list[str]:
        return self.keys("head")
