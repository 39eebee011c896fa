"""Algorithm registry: configs name a method by string; hyper-parameters are validated here."""

from __future__ import annotations

from typing import Any, Mapping

from pfedkit.algorithms.base import Algorithm, TrainSettings
from pfedkit.core.config import build_dataclass
from pfedkit.core.errors import ConfigError
from pfedkit.models.split import SplitModel

_ALGORITHMS: dict[str, type[Algorithm]] = {}

AlgoClass = type[Algorithm]


def register_algorithm(cls: AlgoClass) -> AlgoClass:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    _ALGORITHMS[cls.name] = cls
    return cls


def algorithm_names() -> list[str]:
    """Names of every registered algorithm, in registration order."""
    _import_builtin()
    return list(_ALGORITHMS)


def algorithm_class(name: str) -> AlgoClass:
    """The class registered under ``name`` (ConfigError with the valid names otherwise)."""
    _import_builtin()
    if name not in _ALGORITHMS:
        import difflib

        near = difflib.get_close_matches(name, list(_ALGORITHMS), n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ConfigError(f"unknown algorithm {name!r}{hint} (choose from {', '.join(_ALGORITHMS)})")
    return _ALGORITHMS[name]


def resolve_hparams(name: str, raw: Mapping[str, Any] | None) -> Any:
    """Validated HParams dataclass of algorithm ``name`` from the ``hp.<name>`` mapping."""
    return build_dataclass(algorithm_class(name).HParams, raw or {}, f"hp.{name}.")


def validate_all_hparams(hp: Mapping[str, Mapping[str, Any]]) -> None:
    """Check every ``hp.<algo>`` section up front, so a typo fails before any work."""
    for name, raw in hp.items():
        resolve_hparams(name, raw)


def build_algorithm(
    name: str, model: SplitModel, hp_raw: Mapping[str, Any] | None, train: TrainSettings, num_classes: int,
    seed: int = 0,
) -> Algorithm:
    """Instantiate the named algorithm around ``model`` (the workspace model)."""
    return algorithm_class(name)(model, resolve_hparams(name, hp_raw), train, num_classes, seed)


def _import_builtin() -> None:
    import pfedkit.algorithms.builtin  # noqa: F401  (registers the built-in algorithms)
