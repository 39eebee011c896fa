"""What a checkpoint must agree on before a run may continue from it.

A checkpoint stores the run's *fingerprint*: the resolved config as flat dotted keys, minus the
keys that cannot change the numbers, plus the partition hash. `--resume` recomputes it from the
current config and refuses (one line naming every differing key) unless the two agree.

Left out of the fingerprint: ``output`` (the folder may move), ``threads``, ``checkpoint_every``,
``data.root`` (the data may move; the partition hash still has to match), ``flower.*`` (the
simulator does not read it), the hyper-parameters of other algorithms and the options of other
models. ``device`` is compared as the resolved device type (``auto`` on a CPU machine is ``cpu``).

``train.rounds`` may change (to run more rounds) only where the total does not change the numbers.
Every round draws its randomness from (seed, round, client), and no method has a schedule over
the total, but two things do read it: the engine always evaluates the last round, and a private
run (``privacy.epsilon`` > 0) calibrates its noise to the target epsilon over all rounds. So a new
total is refused when `ROUNDS_READERS` applies, when the checkpoint is past it, or when the
rounds the checkpoint already evaluated are not those the new schedule evaluates
(`evaluation_problem`; e.g. a 10-round run with ``eval_every=3`` evaluated round 10, which a
20-round run would not). Anything new that reads ``train.rounds`` belongs in `ROUNDS_READERS`.
"""

from __future__ import annotations

from typing import Any

from pfedkit.core.config import RunConfig, to_dict
from pfedkit.core.errors import ConfigError
from pfedkit.engines.callbacks import EngineState
from pfedkit.engines.report import Record

RESULT_NEUTRAL = ("output", "threads", "checkpoint_every", "data.root")
"""Top-level or dotted keys that never change a run's numbers."""
NEUTRAL_SECTIONS = ("flower.", "hp.", "model.")
"""Sections filtered separately: ``flower.*`` dropped, ``hp``/``model`` kept for this run's choice only."""
ROUNDS_KEY = "train.rounds"
HASH_KEY = "partition_hash"
ROUNDS_READERS = {"privacy.epsilon": "privacy.epsilon > 0 calibrates the noise to the whole run's train.rounds"}
"""Fingerprint keys that, when set (non-zero), make the total number of rounds change the numbers."""


def fingerprint(cfg: RunConfig, partition_hash: str, device_type: str) -> dict[str, Any]:
    """The run's result-relevant settings: ``{dotted key: value}`` plus ``partition_hash``."""
    flat = flatten(to_dict(cfg))
    kept = {k: v for k, v in flat.items() if k not in RESULT_NEUTRAL and not k.startswith(NEUTRAL_SECTIONS)}
    kept["model.name"] = cfg.model.name
    kept |= {f"model.{cfg.model.name}.{k}": v
             for k, v in flatten(to_dict(cfg.model.options_for(cfg.model.name))).items()}
    kept |= {f"hp.{cfg.algorithm}.{k}": v for k, v in flatten(to_dict(cfg.hparams())).items()}
    kept["device"] = device_type
    kept[HASH_KEY] = partition_hash
    return kept


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def check_resumable(saved: dict[str, Any], current: dict[str, Any], state: EngineState, eval_every: int,
                    path: str) -> None:
    """ConfigError (one line) unless a run with fingerprint ``current`` may continue the
    checkpoint at ``path`` (``saved`` fingerprint, ``state``) to an uninterrupted run's result."""
    if not saved:
        raise ConfigError(f"checkpoint {path!r} records no config (written by an older pfedkit), so a resume "
                          "cannot be checked; rerun with --overwrite")
    keys = sorted(set(saved) | set(current), key=_order)
    diffs = [f"{k} {_show(saved.get(k))} -> {_show(current.get(k))}" for k in keys
             if k not in (ROUNDS_KEY, HASH_KEY) and saved.get(k) != current.get(k)]
    if not diffs and saved.get(HASH_KEY) != current.get(HASH_KEY):  # same config, other data or code
        diffs = [f"the partition (hash {str(saved.get(HASH_KEY))[:12]} -> {str(current.get(HASH_KEY))[:12]})"]
    if diffs:
        raise ConfigError(f"cannot resume: {', '.join(diffs)} differ from the checkpoint; rerun with --overwrite "
                          "or restore the config")
    rounds = int(current[ROUNDS_KEY])
    if rounds != saved.get(ROUNDS_KEY):
        reasons = [why for key, why in ROUNDS_READERS.items() if current.get(key)]
        if reasons:
            raise ConfigError(f"cannot resume with {ROUNDS_KEY} {saved.get(ROUNDS_KEY)} -> {rounds}: {reasons[0]}; "
                              f"keep {ROUNDS_KEY}={saved.get(ROUNDS_KEY)} or rerun with --overwrite")
    if state.round > rounds:
        raise ConfigError(f"cannot resume: the checkpoint is at round {state.round}, past {ROUNDS_KEY}={rounds}; "
                          f"set {ROUNDS_KEY} >= {state.round} or rerun with --overwrite")
    problem = evaluation_problem(state.history, rounds, eval_every)
    if problem:
        raise ConfigError(f"cannot resume with {ROUNDS_KEY} {saved.get(ROUNDS_KEY)} -> {rounds}: {problem}; "
                          f"keep {ROUNDS_KEY}={saved.get(ROUNDS_KEY)} or rerun with --overwrite")


def evaluation_problem(history: list[Record], rounds: int, eval_every: int) -> str:
    """Why ``history`` is not what a ``rounds``-round run evaluates ("" when it is): the engine
    evaluates round r >= 1 iff r % eval_every == 0 or r == rounds."""
    for rec in history:
        r = rec["round"]
        expected = r % eval_every == 0 or r == rounds
        if r >= 1 and "eval" in rec and not expected:
            return (f"round {r} was evaluated as the last round (eval_every={eval_every}), which a {rounds}-round "
                    "run does not do")
        if r >= 1 and "eval" not in rec and expected:
            return f"round {r} was not evaluated, which a {rounds}-round run does (eval_every={eval_every})"
    return ""


def _order(key: str) -> tuple[int, str]:
    """Top-level keys first, then sections, each alphabetically (a stable, readable message)."""
    return key.count("."), key


def _show(value: Any) -> str:
    return "(absent)" if value is None else str(value)
