"""FedBN: FedAvg in which every normalisation layer (affine parameters and running statistics)
stays local to its client."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from pfedkit.algorithms.registry import register_algorithm
from pfedkit.algorithms.toolkit.partial_sharing import PartialSharing
from pfedkit.core.config import param

_BATCH_NORMS: tuple[type[nn.Module], ...] = (nn.modules.batchnorm._BatchNorm,)
_ALL_NORMS: tuple[type[nn.Module], ...] = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm,
                                           nn.LocalResponseNorm)


@dataclass
class FedBNHParams:
    local_norms: str = param("batch", choices=("batch", "all"),
                             doc="which layers stay local: BatchNorm (paper) or every normalisation layer")


def norm_keys(model: nn.Module, kinds: tuple[type[nn.Module], ...]) -> list[str]:
    """state_dict keys (weights, biases, running mean/var, batch counters) of the model's
    normalisation layers of the given kinds, in state_dict order."""
    prefixes = [name + "." for name, m in model.named_modules() if name and isinstance(m, kinds)]
    return [k for k in model.state_dict() if any(k.startswith(p) for p in prefixes)]


@register_algorithm
class FedBN(PartialSharing[FedBNHParams]):
    """FedBN (Li, Jiang, Zhang, Kamp, Dou, "FedBN: Federated Learning on Non-IID Features via Local
    Batch Normalization", ICLR 2021).

    Shared: every tensor except those of normalisation layers, uploaded and sample-weighted
    averaged as in FedAvg. Personal: the normalisation layers' affine parameters and running
    statistics (``local_norms="batch"``: BatchNorm, as in the paper; ``"all"``: also
    InstanceNorm, GroupNorm, LayerNorm). All clients start from the same initial norm layers.
    Local update: ``train.local_epochs`` epochs of cross-entropy over every parameter.

    With a model that has no normalisation layers (e.g. ``cnn`` with ``norm="none"``) there is
    nothing personal and FedBN is exactly FedAvg; use ``model.cnn.norm=batch`` to compare them.
    """

    name = "fedbn"
    shares = "everything except normalisation layers"
    keeps = "normalisation layers (affine + running stats)"
    paper = ("Li et al., FedBN: Federated Learning on Non-IID Features via Local Batch Normalization, "
             "ICLR 2021")

    def personal_keys(self) -> list[str]:
        return norm_keys(self.model, _norm_kinds(self.hp))

    @classmethod
    def equivalent_to(cls, model: nn.Module, hp: FedBNHParams) -> str | None:
        """FedAvg when the model has no normalisation layer of the kinds ``hp.local_norms`` keeps."""
        if norm_keys(model, _norm_kinds(hp)):
            return None
        kind = "BatchNorm" if hp.local_norms == "batch" else "normalisation"
        return f"fedavg (the model has no {kind} layers)"


def _norm_kinds(hp: FedBNHParams) -> tuple[type[nn.Module], ...]:
    return _BATCH_NORMS if hp.local_norms == "batch" else _ALL_NORMS
