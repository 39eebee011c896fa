"""FedVPT-LH: a shared visual prompt (FedAvg) with a local head per client, on a frozen ViT."""

from __future__ import annotations

from pfedkit.algorithms.methods.fedper import FedPer
from pfedkit.algorithms.registry import register_algorithm
from pfedkit.algorithms.toolkit.prompting import PromptedOnly


@register_algorithm
class FedVPTLH(PromptedOnly, FedPer):
    """FedPer's split on ``model.name=vit``: the body (the prompt tokens) is averaged, the head
    stays with each client; both train together on cross-entropy."""

    name = "fedvpt_lh"
    shares = "prompt tokens (FedAvg); the frozen ViT never travels"
    keeps = "head"
    paper = "VPT (Jia et al., ECCV 2022) + FedPer-style local head (Arivazhagan et al., 2019)"
