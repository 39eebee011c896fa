"""Linear probes on frozen-ViT features: a FedAvg-trained linear head (``linear_probe``) and a
local linear head per client (``local_probe``); the image features e(x) are computed once."""

from __future__ import annotations

from pfedkit.algorithms.methods.fedavg import FedAvg
from pfedkit.algorithms.methods.local import Local
from pfedkit.algorithms.protocol import NoHParams
from pfedkit.algorithms.registry import register_algorithm
from pfedkit.algorithms.toolkit.prompting import FrozenFeaturesOnly


@register_algorithm
class LinearProbe(FrozenFeaturesOnly, FedAvg[NoHParams]):
    """FedAvg of a linear head on the cached prompt-free [CLS] features of a frozen ViT."""

    name = "linear_probe"
    shares = "linear head on frozen features (FedAvg)"
    keeps = "nothing (evaluates the global head)"
    paper = "linear probing of a frozen backbone, federated with FedAvg"


@register_algorithm
class LocalProbe(FrozenFeaturesOnly, Local):
    """A linear head per client on the cached frozen features; nothing is shared."""

    name = "local_probe"
    shares = "nothing"
    keeps = "linear head on frozen features"
    paper = "linear probing of a frozen backbone, per client"
