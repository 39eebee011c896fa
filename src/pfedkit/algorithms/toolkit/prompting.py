"""What prompt-tuning methods share: which models they run on and the checks that say so."""

from __future__ import annotations

from typing import Any, ClassVar

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


class PromptedOnly:
    """Mixin (list it before the algorithm base) for methods that tune prompts: they run only on
    ``model.name=vit`` with prompt tokens, and refuse any other model at construction."""

    name: ClassVar[str]
    model: SplitModel

    @classmethod
    def supports_model(cls, name: str, options: Any) -> bool:
        return is_prompted(name, options)

    def setup(self) -> None:
        require_prompted(self.name, self.model)
        super().setup()  # type: ignore[misc]


class FrozenFeaturesOnly:
    """Mixin for linear probes: they run only on cached frozen features (``model.vit.prompts=0``)."""

    name: ClassVar[str]
    model: SplitModel

    @classmethod
    def supports_model(cls, name: str, options: Any) -> bool:
        return is_frozen_probe(name, options)

    def setup(self) -> None:
        require_frozen_features(self.name, self.model)
        super().setup()  # type: ignore[misc]
