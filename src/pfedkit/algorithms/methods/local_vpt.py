"""Local-VPT: each client tunes its own prompt and head on the frozen ViT; no federation."""

from __future__ import annotations

from pfedkit.algorithms.methods.local import Local
from pfedkit.algorithms.registry import register_algorithm
from pfedkit.algorithms.toolkit.prompting import PromptedOnly


@register_algorithm
class LocalVPT(PromptedOnly, Local):
    """Local training on ``model.name=vit``: prompt tokens and head are personal, nothing is sent."""

    name = "local_vpt"
    shares = "nothing"
    keeps = "prompt tokens + head"
    paper = "VPT (Jia et al., ECCV 2022) per client"
