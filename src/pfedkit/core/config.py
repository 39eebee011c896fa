"""Typed run configuration: one YAML file plus ``key=value`` overrides, validated before any work.

Every field carries its allowed range or choices in its metadata; ``build_dataclass`` turns a
nested mapping into the dataclasses and raises a one-line :class:`ConfigError` for an unknown
key (with the nearest valid key), a wrong type, or a value outside its range.

Lists that belong to a higher layer (partition schemes, optimizers) and per-name sections
(``hp.<algorithm>.*``, ``model.<model>.*``) are not repeated here: their registries declare them
with `register_choices` and `register_sections` when imported (``import pfedkit`` imports them
all), and validation reads them from there. A section is validated once, into its typed
dataclass, and kept typed in the resolved config.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

import yaml

from pfedkit.core.config_file import read_config_file
from pfedkit.core.errors import ConfigError

T = TypeVar("T")

_CHOICES: dict[str, Callable[[], Sequence[str]]] = {}
_SECTIONS: dict[str, Callable[[], Mapping[str, type]]] = {}


def register_choices(group: str, names: Callable[[], Sequence[str]]) -> None:
    """Declare the allowed values of every field whose ``param(choices_from=group)`` names ``group``;
    ``names()`` is read at validation time, so it reflects the registry as it is then."""
    _CHOICES[group] = names


def register_sections(group: str, classes: Callable[[], Mapping[str, type]]) -> None:
    """Declare the typed sections of ``group``: ``classes()`` maps a section name (an algorithm,
    a model) to the dataclass its keys are validated into."""
    _SECTIONS[group] = classes


def choices_of(group: str) -> tuple[str, ...]:
    """The registered values of ``group`` (RuntimeError if no registry declared it)."""
    if group not in _CHOICES:
        raise RuntimeError(f"no registry declared the choices {group!r}; import pfedkit first")
    return tuple(_CHOICES[group]())


def sections_of(group: str) -> Mapping[str, type]:
    """The registered section dataclasses of ``group`` by name."""
    if group not in _SECTIONS:
        raise RuntimeError(f"no registry declared the sections {group!r}; import pfedkit first")
    return _SECTIONS[group]()


def param(default: Any, *, lo: float | None = None, hi: float | None = None,
          lo_open: bool = False, choices: tuple[Any, ...] | None = None, choices_from: str | None = None,
          sections: str | None = None, inline: bool = False, doc: str = "") -> Any:
    """A dataclass field with its allowed range ``[lo, hi]`` (``(lo, hi]`` if lo_open) or choices.

    ``choices_from`` names a registered choice group (`register_choices`) instead of a fixed
    tuple. ``sections`` (for a ``dict`` field) names a registered section group
    (`register_sections`): each key of the mapping must be a section name and its value is
    validated into that section's dataclass. An ``inline`` sections field takes the sections
    written directly in its dataclass's mapping (``model.cnn.width``, not ``model.options.cnn``).
    """
    meta = {"lo": lo, "hi": hi, "lo_open": lo_open, "choices": choices, "choices_from": choices_from,
            "sections": sections, "inline": inline, "doc": doc}
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
    domains: str = param("source", choices=("source", "corruptions"),
                         doc="source = the dataset's own domains (if any); corruptions = each image gets one "
                             "of data.domain_corruptions as its domain (datasets without domains)")
    domain_corruptions: str = param("none,fog,gaussian_noise,contrast",
                                    doc="comma-separated corruption types used as domains; none = clean")
    domain_severity: int = param(3, lo=1, hi=5, doc="severity 1-5 of every corruption domain")

    def __post_init__(self) -> None:
        """Check each ``domain_corruptions`` name against the registered corruption names (the data
        layer declares them); `pfedkit.data.domains.corruption_domains` checks again when used."""
        if "data.domain_corruptions" not in _CHOICES:
            return
        names = tuple(n.strip() for n in str(self.domain_corruptions).split(",") if n.strip())
        check_domain_names(names, choices_of("data.domain_corruptions"),
                           f"data.domain_corruptions={self.domain_corruptions!r}")


def check_domain_names(names: Sequence[str], allowed: Sequence[str], what: str, kind: str = "corruption",
                       empty: str = "no domain given; list comma-separated names") -> None:
    """One-line ConfigError (prefixed by ``what``) when ``names`` is empty (``empty``), names a
    ``kind`` not in ``allowed`` or names one twice."""
    if not names:
        raise ConfigError(f"{what}: {empty} from {', '.join(allowed)}")
    for i, name in enumerate(names):
        if name not in allowed:
            raise ConfigError(f"{what}: unknown {kind} {name!r}; choose from {', '.join(allowed)}")
        if name in names[:i]:
            raise ConfigError(f"{what}: {name!r} is listed twice; each must be named once")


@dataclass
class PartitionConfig:
    """How the pool is split among clients (see pfedkit.data.partition)."""

    scheme: str = param("dirichlet", choices_from="partition.scheme")
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
    """Which model, and per-model options as ``model.<name>.*`` (e.g. ``model.cnn.width``).

    ``options`` holds the validated options dataclass of every model section given; a model
    without a section runs with its defaults (`options_for`).
    """

    name: str = param("cnn", choices_from="model")
    options: dict[str, Any] = param({}, sections="model", inline=True, doc="model.<name>.<option>")

    def options_for(self, name: str) -> Any:
        """The typed options of model ``name``: as configured, else its defaults."""
        return self.options.get(name) or sections_of("model")[name]()


@dataclass
class TrainSettings:
    """Rounds, participation and the local optimiser (``train.*``); algorithms read the local
    optimisation fields, engines the rest."""

    rounds: int = param(20, lo=1, hi=100_000)
    client_fraction: float = param(1.0, lo=0.0, hi=1.0, lo_open=True)
    local_epochs: int = param(1, lo=1, hi=1000)
    batch_size: int = param(32, lo=1, hi=1_000_000)
    optimizer: str = param("sgd", choices_from="optimizer")
    lr: float = param(0.05, lo=0.0, hi=10.0, lo_open=True)
    momentum: float = param(0.0, lo=0.0, hi=0.999)
    weight_decay: float = param(0.0, lo=0.0, hi=1.0)


@dataclass
class FlowerConfig:
    """The Flower engine's waits and Ray resources (``flower.*``); see docs/deploy.md."""

    round_timeout: float = param(600.0, lo=0.0, lo_open=True,
                                 doc="seconds a round (and an evaluation) waits for replies; later ones are left out")
    connect_timeout: float = param(120.0, lo=0.0, lo_open=True,
                                   doc="seconds the server waits for every client's node to connect")
    client_cpus: float = param(1.0, lo=0.0, lo_open=True, doc="flower-sim: CPUs Ray reserves per client")
    ray_cpus: int = param(0, lo=0, doc="flower-sim: CPUs Ray may use (0 = all of the machine's)")


@dataclass
class SimulateConfig:
    """The in-process simulator's options (``simulate.*``, for ``engine=simulate``); see
    docs/performance.md."""

    batched: str = param("auto", choices=("auto", "always", "never"),
                         doc="train a round's sampled clients together (stacked parameters, vmap): auto = when "
                             "the method and model support it and the device is not the CPU (on CPU the serial "
                             "path is faster); always (an error if unsupported); never = one client at a time")
    batch_clients: int = param(0, lo=0, doc="batched path: at most this many clients per stacked call (0 = all "
                                            "sampled clients; lower it to bound memory)")


@dataclass
class PrivacyConfig:
    """Record-level differential privacy of what clients share (``privacy.*``; docs/privacy.md).

    Off unless ``epsilon`` or ``noise_multiplier`` is set (not both). Each client's guarantee is
    about one of its own training records: DP-SGD on what it trains and uploads, noised feature
    statistics for pFedGM and pFedFDA, composed by opacus's RDP accountant.
    """

    epsilon: float = param(0.0, lo=0.0, doc="target epsilon of each client over the whole run (the noise is "
                                             "calibrated to it before training); 0 = off")
    delta: float = param(1e-5, lo=0.0, hi=0.1, lo_open=True,
                         doc="delta of the (epsilon, delta) guarantee; keep it well below 1 / (a client's records)")
    noise_multiplier: float = param(0.0, lo=0.0, hi=1e6, doc="a fixed noise multiplier instead of a target epsilon "
                                                             "(the epsilon spent is then only reported); 0 = unset")
    clip: float = param(1.0, lo=0.0, lo_open=True, hi=1e6, doc="DP-SGD: per-example gradient norm bound C")
    stats_clip: float = param(5.0, lo=0.0, lo_open=True, hi=1e6,
                              doc="released statistics: feature-vector norm bound C_f (pFedGM, pFedFDA)")

    def __post_init__(self) -> None:
        if self.epsilon > 0 and self.noise_multiplier > 0:
            raise ConfigError(f"privacy.epsilon={self.epsilon:g} and privacy.noise_multiplier="
                              f"{self.noise_multiplier:g} are both set; set one of them (the other stays 0)")

    @property
    def enabled(self) -> bool:
        """Whether the run is private (a target epsilon or a noise multiplier is set)."""
        return self.epsilon > 0 or self.noise_multiplier > 0


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
    engine: str = param("simulate", choices=("simulate", "flower-sim"),
                        doc="simulate = the in-process simulator; flower-sim = Flower's Ray simulation "
                            "(pip install 'pfedkit[flower]'); deployments: `pfedkit flower app`")
    data: DataConfig = field(default_factory=DataConfig)
    partition: PartitionConfig = field(default_factory=PartitionConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainSettings = field(default_factory=TrainSettings)
    flower: FlowerConfig = field(default_factory=FlowerConfig)
    simulate: SimulateConfig = field(default_factory=SimulateConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    hp: dict[str, Any] = param({}, sections="algorithm", doc="per-algorithm hyper-parameters, e.g. hp.fedprox.mu")

    def hparams(self, algorithm: str | None = None) -> Any:
        """The typed hyper-parameters of ``algorithm`` (default: this run's): as configured,
        else the algorithm's defaults."""
        name = self.algorithm if algorithm is None else algorithm
        return self.hp.get(name) or sections_of("algorithm")[name]()


def build_dataclass(cls: type[T], data: Mapping[str, Any] | None, path: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, checking keys, types and ranges recursively."""
    data = dict(data or {})
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'} must be a mapping, got {type(data).__name__}", key=path.rstrip(".") or None)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    inline = next((f for f in fields.values() if f.metadata.get("inline")), None)
    if inline is not None:  # every key that is not a field is one of the inline sections
        data.pop(inline.name, None)
        data[inline.name] = {k: data.pop(k) for k in list(data) if k not in fields}
    for key in data:
        if key not in fields:
            raise ConfigError(_unknown_key_message(f"{path}{key}", key, [f"{path}{k}" for k in fields]),
                              key=f"{path}{key}")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in data:
            continue
        where = path.rstrip(".") if f.metadata.get("inline") else f"{path}{name}"
        kwargs[name] = _coerce(hints[name], data[name], where, f.metadata)
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict of a config dataclass (YAML-serialisable, loadable by `load_config`)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            value = to_dict(value)
        elif isinstance(value, dict):
            value = {k: to_dict(v) if dataclasses.is_dataclass(v) else v for k, v in value.items()}
        if f.metadata.get("inline"):
            out.update(value)
        else:
            out[f.name] = value
    return out


def load_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:  # type: ignore[assignment]
    """Read YAML (optional), apply ``a.b=value`` overrides, validate, return a RunConfig.

    A fault in the file's syntax, a key written twice, an empty file, or a bad value of a key
    the file sets (not an override) is reported with the file's line and column.
    """
    raw: dict[str, Any] = {}
    places: dict[str, Any] = {}
    if path is not None:
        raw, places = read_config_file(Path(path))
    for item in overrides:
        apply_override(raw, item)
    try:
        return build_dataclass(RunConfig, raw)
    except ConfigError as err:
        key = err.key
        overridden = [item.partition("=")[0].strip() for item in overrides]
        if key is None or key not in places or any(key == o or key.startswith(o + ".") for o in overridden):
            raise
        raise ConfigError(f"{path}, {places[key]}: {err}", key=key) from None


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
        group = f.metadata.get("sections")
        if group:
            base = prefix if f.metadata.get("inline") else prefix + f.name + "."
            for name, section in (sections_of(group) if group in _SECTIONS else {}).items():
                keys += all_keys(section, f"{base}{name}.")
            continue
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


_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _coerce(tp: Any, value: Any, path: str, meta: Mapping[str, Any]) -> Any:
    given = value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path} must be a section (mapping), got {value!r}", key=path)
        return build_dataclass(tp, value, path + ".")
    origin = typing.get_origin(tp)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path} must be a mapping, got {value!r}", key=path)
        if meta.get("sections"):
            return _sections(meta["sections"], value, path)
        return {str(k): (dict(v) if isinstance(v, dict) else v) for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if isinstance(value, dict) and tp in _KINDS:
        raise ConfigError(f"{path} must be {_KINDS[tp]}, but keys are written under it "
                          f"({', '.join(map(str, value))}); check their indentation", key=path)
    if isinstance(value, float) and not math.isfinite(value):
        allowed = range_text(meta)
        raise ConfigError(f"{path}={_yaml_number(value)} is not a finite number (NaN and infinities are refused); "
                          f"set {'a value in ' + allowed if allowed else 'a finite value'}", key=path)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}={value!r} must be true or false", key=path)
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ConfigError(f"{path}={value!r} must be an integer", key=path)
    elif tp is float:
        if isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value):  # YAML 1.1 reads 1e-5 as text
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}={value!r} must be a number", key=path)
        value = float(value)
    elif tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{path}={value!r} must be a string", key=path)
        value = str(value)
    check_range(path, value, meta, shown=given)
    return value


_EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
"""A number in exponent form without a dot in the mantissa (``1e-5``), which YAML 1.1 leaves a string."""


def _yaml_number(value: float) -> str:
    """A non-finite float as YAML writes it (``.nan``, ``.inf``, ``-.inf``)."""
    return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")


def _sections(group: str, value: Mapping[str, Any], path: str) -> dict[str, Any]:
    """``{name: section dataclass}`` of a sections field, each validated under ``path.name.``."""
    classes = sections_of(group)
    out: dict[str, Any] = {}
    for name, raw in value.items():
        name = str(name)
        if name not in classes:  # a misspelt section, or an option written without its section
            candidates = [f"{path}.{c}" for c in classes]
            candidates += [f"{path}.{c}.{f.name}" for c, cls in classes.items() for f in dataclasses.fields(cls)]
            raise ConfigError(_unknown_key_message(f"{path}.{name}", name, candidates), key=f"{path}.{name}")
        out[name] = raw if isinstance(raw, classes[name]) else build_dataclass(classes[name], raw, f"{path}.{name}.")
    return out


def check_range(path: str, value: Any, meta: Mapping[str, Any], shown: Any = None) -> None:
    """Raise ConfigError naming key, value (as the user wrote it: ``shown``) and the allowed
    range or choices if ``value`` violates them."""
    shown = value if shown is None else shown
    choices = meta.get("choices")
    if meta.get("choices_from"):
        choices = choices_of(meta["choices_from"])
    if choices is not None and value not in choices:
        raise ConfigError(f"{path}={shown!r} is not allowed; choose one of {', '.join(map(str, choices))}", key=path)
    lo, hi, lo_open = meta.get("lo"), meta.get("hi"), meta.get("lo_open", False)
    if lo is None and hi is None:
        return
    too_low = lo is not None and (value <= lo if lo_open else value < lo)
    too_high = hi is not None and value > hi
    if too_low or too_high or value != value:  # value != value: NaN, which no comparison catches
        raise ConfigError(f"{path}={shown!r} is out of range; allowed {range_text(meta)}", key=path)


def range_text(meta: Mapping[str, Any]) -> str:
    """The allowed range of a field as ``[lo, hi]`` (``(lo, hi]`` if lo_open); "" if unbounded."""
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is None and hi is None:
        return ""
    left = "(" if meta.get("lo_open", False) else "["
    lo_s = "-inf" if lo is None else f"{lo:g}"
    hi_s = "inf" if hi is None else f"{hi:g}"
    return f"{left}{lo_s}, {hi_s}]"
