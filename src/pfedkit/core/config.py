"""Typed run configuration: one YAML file plus ``key=value`` overrides, validated before any work.

Every field carries its allowed range or choices in its metadata; ``build_dataclass`` turns a
nested mapping into the dataclasses and raises a one-line :class:`ConfigError` for an unknown
key (with the nearest valid key), a wrong type, or a value outside its range.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

from pfedkit.core.errors import ConfigError

T = TypeVar("T")


def param(default: Any, *, lo: float | None = None, hi: float | None = None,
          lo_open: bool = False, choices: tuple[Any, ...] | None = None, doc: str = "") -> Any:
    """A dataclass field with its allowed range ``[lo, hi]`` (``(lo, hi]`` if lo_open) or choices."""
    meta = {"lo": lo, "hi": hi, "lo_open": lo_open, "choices": choices, "doc": doc}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def default_data_root() -> str:
    """``$PFEDKIT_DATA`` if set, else ``~/.cache/pfedkit/data``."""
    return os.environ.get("PFEDKIT_DATA", str(Path.home() / ".cache" / "pfedkit" / "data"))


@dataclass
class DataConfig:
    """Which dataset, how many clients and how each client's data is split."""

    dataset: str = param("digits", doc="source name: digits, fashion-mnist, mnist, digits-md, cifar10, ...")
    root: str = param("", doc="data folder; empty = $PFEDKIT_DATA or ~/.cache/pfedkit/data")
    num_clients: int = param(20, lo=1, hi=100_000)
    val_fraction: float = param(0.15, lo=0.0, hi=0.5, doc="per-client validation share")
    test_fraction: float = param(0.2, lo=0.0, hi=0.5, lo_open=True, doc="per-client test share")
    max_samples: int = param(0, lo=0, doc="use a seeded subset of the pool of this size (0 = all)")


@dataclass
class PartitionConfig:
    """How the pool is split among clients (see pfedkit.data.partition)."""

    scheme: str = param("dirichlet", choices=("iid", "dirichlet", "pathological", "shards", "quantity",
                                               "domain", "domain-dirichlet"))
    alpha: float = param(0.3, lo=0.0, hi=1e6, lo_open=True, doc="Dirichlet label concentration")
    classes_per_client: int = param(2, lo=1, hi=100_000)
    shards_per_client: int = param(2, lo=1, hi=100_000)
    min_size: int = param(10, lo=1)
    quantity_sigma: float = param(1.0, lo=0.0, hi=10.0, doc="log-normal sigma of client sizes")
    alpha_domain: float = param(1.0, lo=0.0, hi=1e6, lo_open=True, doc="Dirichlet over domains in a client")
    corruption: str = param("none", doc="none, random, or a corruption type applied per client")
    severity: int = param(0, lo=0, hi=5, doc="corruption severity 1-5; 0 = random per client")
    num_heldout: int = param(0, lo=0, doc="last clients that never train (new-client evaluation)")


@dataclass
class ModelConfig:
    """Backbone choice; the head/body split comes from the model."""

    name: str = param("cnn")
    width: int = param(32, lo=1, hi=4096)
    feature_dim: int = param(128, lo=2, hi=8192)
    norm: str = param("none", choices=("none", "batch"))


@dataclass
class TrainConfig:
    """Rounds, participation and the local optimiser."""

    rounds: int = param(20, lo=1, hi=100_000)
    client_fraction: float = param(1.0, lo=0.0, hi=1.0, lo_open=True)
    local_epochs: int = param(1, lo=1, hi=1000)
    batch_size: int = param(32, lo=1, hi=1_000_000)
    optimizer: str = param("sgd", choices=("sgd", "adam"))
    lr: float = param(0.05, lo=0.0, hi=10.0, lo_open=True)
    momentum: float = param(0.0, lo=0.0, hi=0.999)
    weight_decay: float = param(0.0, lo=0.0, hi=1.0)


@dataclass
class RunConfig:
    """Everything one run needs. ``hp`` maps an algorithm name to its hyper-parameters."""

    algorithm: str = param("fedavg")
    seed: int = param(0, lo=0, hi=2**31 - 1)
    device: str = param("cpu", doc="cpu, cuda, cuda:N or auto")
    threads: int = param(1, lo=0, hi=1024, doc="torch CPU threads (0 = torch's default); small models run "
                                               "fastest on one")
    output: str = param("results/run")
    eval_every: int = param(1, lo=1, hi=100_000)
    checkpoint_every: int = param(0, lo=0, doc="save a checkpoint every N rounds (0 = off)")
    data: DataConfig = field(default_factory=DataConfig)
    partition: PartitionConfig = field(default_factory=PartitionConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    hp: dict[str, dict[str, Any]] = param({}, doc="per-algorithm hyper-parameters, e.g. hp.fedprox.mu")


def build_dataclass(cls: type[T], data: Mapping[str, Any] | None, path: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, checking keys, types and ranges recursively."""
    data = dict(data or {})
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            raise ConfigError(_unknown_key_message(f"{path}{key}", key, [f"{path}{k}" for k in fields]))
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in data:
            continue
        kwargs[name] = _coerce(hints[name], data[name], f"{path}{name}", f.metadata)
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict of a config dataclass (YAML-serialisable)."""
    return dataclasses.asdict(cfg)


def load_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:  # type: ignore[assignment]
    """Read YAML (optional), apply ``a.b=value`` overrides, validate, return a RunConfig."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} not found")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{p}: not valid YAML ({str(err).splitlines()[0]})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of keys")
    for item in overrides:
        apply_override(raw, item)
    return build_dataclass(RunConfig, raw)


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Set ``raw[a][b] = value`` for ``item = "a.b=value"`` (value parsed as YAML)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key=value")
    key, _, text = item.partition("=")
    try:
        value = yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        value = text
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def all_keys(cls: type = RunConfig, prefix: str = "") -> list[str]:
    """Every dotted key of a config dataclass, sections included."""
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        keys.append(prefix + f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            keys += all_keys(hints[f.name], prefix + f.name + ".")
    return keys


def _unknown_key_message(full: str, key: str, candidates: list[str]) -> str:
    names = [c.rsplit(".", 1)[-1] for c in candidates]
    near = difflib.get_close_matches(key, names, n=1, cutoff=0.5)
    if not near:
        near_full = difflib.get_close_matches(full, all_keys(), n=1, cutoff=0.6)
        hint = f"; did you mean {near_full[0]!r}?" if near_full else f"; valid keys: {', '.join(candidates)}"
    else:
        hint = f"; did you mean {candidates[names.index(near[0])]!r}?"
    return f"unknown config key {full!r}{hint}"


def _coerce(tp: Any, value: Any, path: str, meta: Mapping[str, Any]) -> Any:
    given = value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path} must be a section (mapping), got {value!r}")
        return build_dataclass(tp, value, path + ".")
    origin = typing.get_origin(tp)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path} must be a mapping, got {value!r}")
        return {str(k): (dict(v) if isinstance(v, dict) else v) for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}={value!r} must be true or false")
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ConfigError(f"{path}={value!r} must be an integer")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}={value!r} must be a number")
        value = float(value)
    elif tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{path}={value!r} must be a string")
        value = str(value)
    check_range(path, value, meta, shown=given)
    return value


def check_range(path: str, value: Any, meta: Mapping[str, Any], shown: Any = None) -> None:
    """Raise ConfigError naming key, value (as the user wrote it: ``shown``) and the allowed
    range or choices if ``value`` violates them."""
    shown = value if shown is None else shown
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{path}={shown!r} is not allowed; choose one of {', '.join(map(str, choices))}")
    lo, hi, lo_open = meta.get("lo"), meta.get("hi"), meta.get("lo_open", False)
    if lo is None and hi is None:
        return
    too_low = lo is not None and (value <= lo if lo_open else value < lo)
    too_high = hi is not None and value > hi
    if too_low or too_high:
        left = "(" if lo_open else "["
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        raise ConfigError(f"{path}={shown!r} is out of range; allowed {left}{lo_s}, {hi_s}]")
