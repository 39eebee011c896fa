"""FedVPT-LH: a shared visual prompt (FedAvg) with a local head per client, on a frozen ViT."""

from __future__ import annotations

from typing import Any

from pfedkit.algorithms.methods.fedper import FedPer
from pfedkit.algorithms.registry import register_algorithm
from pfedkit.algorithms.toolkit.prompting import is_prompted, require_prompted


@register_algorithm
class FedVPTLH(FedPer):
    """FedPer's split on ``model.name=vit``: the body (the prompt tokens) is averaged, the head
    stays with each client; both train together on cross-entropy."""

    name = "fedvpt_lh"
    shares = "prompt tokens (FedAvg); the frozen ViT never travels"
    keeps = "head"
    paper = "VPT (Jia et al., ECCV 2022) + FedPer-style local head (Arivazhagan et al., 2019)"

    @classmethod
    def supports_model(cls, name: str, options: Any) -> bool:
        return is_prompted(name, options)

    def setup(self) -> None:
        require_prompted(self.name, self.model)
        super().setup()
