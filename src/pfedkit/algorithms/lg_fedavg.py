"""LG-FedAvg: local representations (body) per client, a global head averaged by FedAvg."""

from __future__ import annotations

from pfedkit.algorithms.partial_sharing import PartialSharing
from pfedkit.algorithms.registry import register_algorithm


@register_algorithm
class LGFedAvg(PartialSharing):
    """LG-FedAvg (Liang, Liu, Ziyin, Allen, Auerbach, Brent, Salakhutdinov, Morency, "Think
    Locally, Act Globally: Federated Learning with Local and Global Representations", NeurIPS 2019
    Workshop on Federated Learning; arXiv:2001.01523, 2020).

    Shared: the head (every ``head.*`` tensor), uploaded and sample-weighted averaged; it is also
    all that is broadcast. Personal: the body (every ``body.*`` tensor), kept in the client's
    state; all clients start from the same initial body. Local update: ``train.local_epochs``
    epochs of cross-entropy over body and head together. Hyper-parameters: none beyond ``train.*``.

    Not done: the paper starts from a FedAvg-pretrained model; here every method starts from the
    same seeded random model, so pretraining, if wanted, belongs to the engine's config.
    """

    name = "lg_fedavg"

    shares = "head"

    keeps = "body"
    paper = ("Liang et al., Think Locally, Act Globally: Federated Learning with Local and Global "
             "Representations, NeurIPS 2019 FL workshop (arXiv:2001.01523)")

    def personal_keys(self) -> list[str]:
        return self.keys("body")
