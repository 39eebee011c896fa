"""FedVPT: visual prompt tuning with FedAvg (the usual federated VPT baseline, e.g. as compared in
pFedPG, Yang et al., ICCV 2023): one shared prompt and one shared head on a frozen ViT."""

from __future__ import annotations

from pfedkit.algorithms.methods.fedavg import FedAvg
from pfedkit.algorithms.protocol import NoHParams
from pfedkit.algorithms.registry import register_algorithm
from pfedkit.algorithms.toolkit.prompting import PromptedOnly


@register_algorithm
class FedVPT(PromptedOnly, FedAvg[NoHParams]):
    """FedAvg over the trainable parts of ``model.name=vit``: the prompt tokens and the head
    (sample-weighted average). The frozen backbone is not in the model's state, so it never
    travels. Each client evaluates the global prompt and head."""

    name = "fedvpt"
    shares = "prompt tokens + head (FedAvg); the frozen ViT never travels"
    keeps = "nothing (evaluates the global prompt and head)"
    paper = "VPT (Jia et al., ECCV 2022) trained with FedAvg"
