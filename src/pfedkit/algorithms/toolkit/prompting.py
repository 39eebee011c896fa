"""What prompt-tuning methods share: which models they run on and the checks that say so."""

from __future__ import annotations

from typing import Any, Callable, ClassVar

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


class _ModelRequirement:
    """Mixin base (list the mixin before the algorithm base): ``supports_model`` answers with
    ``_supports`` and construction refuses a model that ``_require`` rejects."""

    name: ClassVar[str]
    model: SplitModel
    _supports: ClassVar[Callable[[str, Any], bool]]
    _require: ClassVar[Callable[[str, SplitModel], SplitModel]]

    @classmethod
    def supports_model(cls, name: str, options: Any) -> bool:
        return cls._supports(name, options)

    def setup(self) -> None:
        type(self)._require(self.name, self.model)
        super().setup()  # type: ignore[misc]


class PromptedOnly(_ModelRequirement):
    """For methods that tune prompts: only ``model.name=vit`` with prompt tokens."""

    _supports = staticmethod(is_prompted)
    _require = staticmethod(require_prompted)


class FrozenFeaturesOnly(_ModelRequirement):
    """For linear probes: only cached frozen features (``model.vit.prompts=0``)."""

    _supports = staticmethod(is_frozen_probe)
    _require = staticmethod(require_frozen_features)
