"""Model registry: configs name a model by string."""

from __future__ import annotations

from typing import Any, Callable

from pfedkit.core.errors import ConfigError
from pfedkit.models.split import SplitModel

ModelFactory = Callable[..., SplitModel]
_MODELS: dict[str, ModelFactory] = {}


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator: make ``factory(input_shape, num_classes, **kw) -> SplitModel`` available by name."""

    def wrap(factory: ModelFactory) -> ModelFactory:
        _MODELS[name] = factory
        return factory

    return wrap


def model_names() -> list[str]:
    """Names of all registered models."""
    return sorted(_MODELS)


def build_model(name: str, input_shape: tuple[int, int, int], num_classes: int, **kwargs: Any) -> SplitModel:
    """Instantiate a registered model (weights drawn from torch's current RNG state)."""
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(model_names())}")
    return _MODELS[name](input_shape, num_classes, **kwargs)
