"""What prompt-tuning methods share: which models they run on and the checks that say so."""

from __future__ import annotations

from typing import Any

from torch import nn

from pfedkit.core.errors import ConfigError
from pfedkit.models.prompted import PromptedClassifier
from pfedkit.models.split import SplitModel


def is_prompted(name: str, options: Any) -> bool:
    """True for ``model.name=vit`` with at least one prompt token."""
    return name == "vit" and getattr(options, "prompts", 0) > 0


def is_frozen_probe(name: str, options: Any) -> bool:
    """True for ``model.name=vit`` with no prompt: methods run on cached frozen features."""
    return name == "vit" and getattr(options, "prompts", 0) == 0


def require_prompted(method: str, model: SplitModel) -> PromptedClassifier:
    """``model`` as a PromptedClassifier with prompt tokens, else a one-line ConfigError."""
    if not isinstance(model, PromptedClassifier) or model.body.num_prompts == 0:
        raise ConfigError(f"{method} tunes visual prompts: set model.name=vit and model.vit.prompts >= 1")
    return model


def require_frozen_features(method: str, model: SplitModel) -> SplitModel:
    """``model`` when it runs on cached frozen features (identity body), else a one-line ConfigError."""
    if not isinstance(model.body, nn.Identity):
        raise ConfigError(f"{method} is a linear probe on frozen features: set model.name=vit and model.vit.prompts=0")
    return model
