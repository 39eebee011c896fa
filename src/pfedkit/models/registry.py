"""Model registry: configs name a model by string and configure it under ``model.<name>.*``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from pfedkit.core.config import register_choices, register_sections
from pfedkit.core.errors import ConfigError
from pfedkit.models.split import SplitModel

ModelFactory = Callable[[tuple[int, int, int], int, Any], SplitModel]
"""``factory(input_shape (C, H, W), num_classes, options) -> SplitModel``."""


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its factory and the dataclass of its ``model.<name>.*`` options."""

    factory: ModelFactory
    options: type


_MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, options: type) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator: make ``factory(input_shape, num_classes, options) -> SplitModel`` available as
    ``model.name=<name>``, its options validated from ``model.<name>.*`` into ``options``."""

    def wrap(factory: ModelFactory) -> ModelFactory:
        _MODELS[name] = ModelEntry(factory, options)
        return factory

    return wrap


def model_names() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_MODELS)


def model_entry(name: str) -> ModelEntry:
    """The registered entry of ``name`` (ConfigError naming the valid models otherwise)."""
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(model_names())}")
    return _MODELS[name]


def build_model(name: str, input_shape: tuple[int, int, int], num_classes: int, options: Any = None) -> SplitModel:
    """Instantiate a registered model (weights drawn from torch's current RNG state); ``options``
    defaults to the model's default options."""
    entry = model_entry(name)
    return entry.factory(input_shape, num_classes, entry.options() if options is None else options)


register_choices("model", model_names)
register_sections("model", lambda: {n: e.options for n, e in _MODELS.items()})
