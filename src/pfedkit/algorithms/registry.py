"""Algorithm registry: configs name a method by string; ``hp.<name>.*`` is validated into the
method's typed HParams when the config is loaded (the registry declares those sections)."""

from __future__ import annotations

import difflib
from typing import Any, Mapping

from pfedkit.algorithms.protocol import Algorithm
from pfedkit.core.config import PrivacyConfig, TrainSettings, build_dataclass, register_sections
from pfedkit.core.errors import ConfigError
from pfedkit.models.split import SplitModel
from pfedkit.stats.privacy_accounting import require_accountant

AlgoClass = type[Algorithm]

_ALGORITHMS: dict[str, AlgoClass] = {}


def register_algorithm(cls: AlgoClass) -> AlgoClass:
    """Class decorator: make ``cls`` available under ``cls.name``. Its ``key_prefix`` must end
    with a dot and not overlap another registered method's."""
    prefix = cls.key_prefix
    if prefix:
        if not prefix.endswith("."):
            raise ValueError(f"{cls.name}: key_prefix {prefix!r} must end with '.'")
        for other in _ALGORITHMS.values():
            if other.name != cls.name and other.key_prefix and (
                    other.key_prefix.startswith(prefix) or prefix.startswith(other.key_prefix)):
                raise ValueError(f"{cls.name}: key_prefix {prefix!r} overlaps {other.name}'s {other.key_prefix!r}")
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
        near = difflib.get_close_matches(name, list(_ALGORITHMS), n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ConfigError(f"unknown algorithm {name!r}{hint} (choose from {', '.join(_ALGORITHMS)})")
    return _ALGORITHMS[name]


def algorithms_for_model(model_name: str, options: Any) -> list[str]:
    """The registered algorithms that run on ``model.name=model_name`` with ``options``."""
    return [name for name in algorithm_names() if _ALGORITHMS[name].supports_model(model_name, options)]


def check_model_support(name: str, model_name: str, options: Any) -> None:
    """ConfigError when algorithm ``name`` does not run on that model (before any work starts)."""
    if not algorithm_class(name).supports_model(model_name, options):
        raise ConfigError(f"algorithm {name!r} does not run on model.name={model_name!r} with these options; "
                          f"`pfedkit list algorithms` says what each method needs")


def check_privacy_support(algorithm: str | AlgoClass, privacy: PrivacyConfig) -> None:
    """ConfigError (one line, naming the methods that can) when ``privacy`` is on and the
    algorithm cannot run privately (``supports_privacy`` is False), or opacus is missing."""
    cls = algorithm_class(algorithm) if isinstance(algorithm, str) else algorithm
    if privacy.enabled:
        require_accountant()
    if privacy.enabled and not cls.supports_privacy:
        able = ", ".join(name for name, c in _ALGORITHMS.items() if c.supports_privacy)
        raise ConfigError(f"algorithm {cls.name!r} does not support privacy.* (docs/privacy.md); use one of "
                          f"{able}, or turn privacy off (privacy.epsilon=0, privacy.noise_multiplier=0)")


def resolve_hparams(name: str, raw: Mapping[str, Any] | None) -> Any:
    """Algorithm ``name``'s HParams from a plain mapping (for scripts; configs arrive typed)."""
    return build_dataclass(algorithm_class(name).HParams, raw or {}, f"hp.{name}.")


def build_algorithm(name: str, model: SplitModel, hp: Any, train: TrainSettings, num_classes: int,
                    seed: int = 0, privacy: PrivacyConfig | None = None) -> Algorithm:
    """Instantiate the named algorithm around ``model`` (the workspace model); ``hp`` is its
    typed HParams (None: the defaults); ``privacy`` the run's ``privacy.*`` (None: off)."""
    cls = algorithm_class(name)
    return cls(model, cls.HParams() if hp is None else hp, train, num_classes, seed, privacy=privacy)


def _hparams_by_name() -> dict[str, type]:
    _import_builtin()
    return {name: cls.HParams for name, cls in _ALGORITHMS.items()}


def _import_builtin() -> None:
    import pfedkit.algorithms.methods  # noqa: F401  (registers the built-in algorithms)


register_sections("algorithm", _hparams_by_name)
