"""Registry of dataset sources: configs name a source by string."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from pfedkit.core.errors import ConfigError
from pfedkit.data.pool import Pool

SourceLoader = Callable[[Path], Pool]
_SOURCES: dict[str, SourceLoader] = {}


def register_source(name: str) -> Callable[[SourceLoader], SourceLoader]:
    """Decorator: make ``loader(root) -> Pool`` available as ``dataset: name``."""

    def wrap(loader: SourceLoader) -> SourceLoader:
        _SOURCES[name] = loader
        return loader

    return wrap


def source_names() -> list[str]:
    """Names of all registered sources."""
    _import_builtin_sources()
    return sorted(_SOURCES)


def load_source(name: str, root: Path) -> Pool:
    """Load the named source from ``root`` (raises DatasetNotFoundError with a how-to if missing)."""
    _import_builtin_sources()
    if name not in _SOURCES:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(sorted(_SOURCES))}")
    return _SOURCES[name](Path(root))


def _import_builtin_sources() -> None:
    import pfedkit.data.sources  # noqa: F401  (registers the built-in sources)
