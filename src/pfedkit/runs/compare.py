"""Compare algorithms on identical partitions over several seeds → markdown table + one plot."""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pfedkit.algorithms.protocol import Algorithm
from pfedkit.algorithms.registry import algorithm_class
from pfedkit.core.config import RunConfig
from pfedkit.core.metrics import mean_std
from pfedkit.data.setup import FederatedData, build_federated_data, load_pool
from pfedkit.engines.report import Record
from pfedkit.runs import results
from pfedkit.runs.experiment import seeded_model, simulate_config


@dataclass
class ComparisonRun:
    """One (algorithm, seed) run of a comparison. ``same_as``: what the method declares it
    computes exactly under this run's model and hyper-parameters (`declared_equivalence`)."""

    algorithm: str
    seed: int
    summary: dict[str, Any]
    history: list[Record]
    same_as: str | None = None


def run_comparison(cfg: RunConfig, algorithms: list[str], seeds: list[int], out_dir: Path | None,
                   progress: bool = True, log: Callable[[str], None] = print, workers: int = 1
                   ) -> list[ComparisonRun]:
    """Run every algorithm on every seed; for a given seed all algorithms see the same partition
    and the same initial weights. Results of each run go to ``out_dir/<algo>/seed<s>/``.

    ``workers > 1`` runs (seed, algorithm) pairs in that many processes; every run is seeded on
    its own, so the results equal a sequential comparison's. Runs come back ordered by seed,
    then algorithm.
    """
    variants = {a: dataclasses.replace(cfg, algorithm=a) for a in algorithms}
    return run_variants(variants, seeds, out_dir, progress, log, workers)


def run_variants(variants: dict[str, RunConfig], seeds: list[int], out_dir: Path | None,
                 progress: bool = True, log: Callable[[str], None] = print, workers: int = 1
                 ) -> list[ComparisonRun]:
    """`run_comparison` for labelled configs that may differ beyond the algorithm (a method's
    model options, an ablation's hyper-parameters); every config must describe the same data and
    partition, so that at a seed all variants see the same clients. Runs are labelled by their
    key and ordered by seed, then variant; results go to ``out_dir/<label>/seed<s>/``."""
    data = {repr((c.data, c.partition)) for c in variants.values()}
    if len(data) > 1:
        raise ValueError("run_variants: every variant must use the same data and partition")
    tasks = [(seed, label) for seed in seeds for label in variants]
    if workers <= 1:
        first = next(iter(variants.values()))
        pool = load_pool(first.data, first.seed)
        feds: dict[int, FederatedData] = {}
        runs = []
        for seed, label in tasks:
            if seed not in feds:
                feds = {seed: build_federated_data(first.data, first.partition, seed, pool=pool)}
                log(f"seed {seed}: {feds[seed].partition.num_clients} clients, "
                    f"partition {feds[seed].partition.hash[:12]}")
            runs.append(_log_run(_run_one(variants[label], label, seed, out_dir, progress, feds[seed]), log))
        return runs
    ctx = multiprocessing.get_context("spawn")  # fork after torch has started threads is unsafe
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_exit_with_parent,
                             initargs=(os.getpid(),)) as ex:
        futures = [ex.submit(_run_one, variants[label], label, seed, out_dir, False, None) for seed, label in tasks]
        return [_log_run(f.result(), log) for f in futures]


def _run_one(cfg: RunConfig, label: str, seed: int, out_dir: Path | None, progress: bool,
             fed: FederatedData | None) -> ComparisonRun:
    """One (variant, seed) run; builds the seed's federated data itself when ``fed`` is None."""
    run_cfg = dataclasses.replace(cfg, seed=seed)
    if fed is None:
        fed = _cached_federation(cfg, seed)
    run_dir = None
    if out_dir is not None:
        run_dir = out_dir / label / f"seed{seed}"
        run_dir.mkdir(parents=True, exist_ok=True)
    # overwrite: the comparison's folder as a whole was claimed by the caller (`OutputFolder` in the CLI)
    res = simulate_config(run_cfg, fed=fed, out_dir=run_dir, progress=progress, overwrite=True)
    return ComparisonRun(label, seed, res.summary, res.history, declared_equivalence(run_cfg, fed))


def declared_equivalence(cfg: RunConfig, fed: FederatedData) -> str | None:
    """`Algorithm.equivalent_to` of ``cfg.algorithm`` on the config's model (built as the run
    builds it) and hyper-parameters, e.g. ``"fedavg (the model has no BatchNorm layers)"``."""
    cls = algorithm_class(cfg.algorithm)
    if getattr(cls.equivalent_to, "__func__", None) is Algorithm.equivalent_to.__func__:
        return None  # declares nothing: no model to build
    return cls.equivalent_to(seeded_model(cfg, fed.input_shape, fed.num_classes), cfg.hparams())


def _exit_with_parent(parent_pid: int) -> None:
    """Worker initializer: end this worker as soon as the comparison process that started it is
    gone (killed, not interrupted), instead of running the rest of its queued runs as an orphan."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


_WORKER_FEDERATIONS: dict[tuple[str, int], FederatedData] = {}
"""Per worker process: the federation of the last (config, seed) it built (one entry at most)."""


def _cached_federation(cfg: RunConfig, seed: int) -> FederatedData:
    key = (repr((cfg.data, cfg.partition)), seed)
    if key not in _WORKER_FEDERATIONS:
        _WORKER_FEDERATIONS.clear()
        _WORKER_FEDERATIONS[key] = build_federated_data(cfg.data, cfg.partition, seed,
                                                        pool=load_pool(cfg.data, cfg.seed))
    return _WORKER_FEDERATIONS[key]


def _log_run(run: ComparisonRun, log: Callable[[str], None]) -> ComparisonRun:
    s = run.summary
    log(f"  seed {run.seed} {run.algorithm:<12} val-selected test {100 * s['selected']['test']['mean']:.2f} "
        f"(round {s['selected_round']}), last {100 * s['last']['test']['mean']:.2f}")
    return run


def comparison_table(runs: list[ComparisonRun]) -> str:
    """Markdown table: per algorithm, mean ± std over seeds of the protocol's metrics (in %).

    A method that declares itself identical to another under the runs' model and
    hyper-parameters (``same_as``) says so in its method cell: ``fedbn = fedavg (the model has
    no BatchNorm layers)``, rather than standing as an unexplained duplicate row.

    ``ECE % (test, val-sel.)`` is the test split's expected calibration error at the
    val-selected round, pooled over the clients' predictions (15 bins); "n/a" for runs whose
    summary has none (over the seeds that have one otherwise). When every summary has per-class
    results, ``rare`` / ``unseen`` give the test accuracy at the val-selected round on the classes
    a client holds 1-9 / 0 training samples of (`pfedkit.engines.report.scarce_class_accuracy`).
    """
    algos = list(dict.fromkeys(r.algorithm for r in runs))
    scarce = all("scarce" in r.summary["selected"] for r in runs)
    columns = ["method", "test acc (val-sel.)", "weighted", "worst 10%", "std across clients", "test acc (last)",
               *(["rare classes", "unseen classes"] if scarce else []),
               "ECE % (test, val-sel.)", "s/round", "MB up/round", "MB down/round"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for a in algos:
        rs = [r for r in runs if r.algorithm == a]
        cell = lambda f: "{:.2f} ± {:.2f}".format(*[100 * v for v in mean_std([f(r.summary) for r in rs])])  # noqa: E731
        mean = lambda f: sum(f(r.summary) for r in rs) / len(rs)  # noqa: E731
        same = next((r.same_as for r in rs if r.same_as), None)
        lines.append("| " + " | ".join([
            f"{a} = {same}" if same else a,
            cell(lambda s: s["selected"]["test"]["mean"]),
            cell(lambda s: s["selected"]["test"]["weighted"]),
            cell(lambda s: s["selected"]["test"]["worst10"]),
            cell(lambda s: s["selected"]["test"]["std"]),
            cell(lambda s: s["last"]["test"]["mean"]),
            *([_finite_cell([r.summary["selected"]["scarce"][k] for r in rs]) for k in ("rare", "unseen")]
              if scarce else []),
            _finite_cell([r.summary["selected"]["test"].get("ece", math.nan) for r in rs]),
            f"{mean(lambda s: s['seconds_per_round']):.2f}",
            f"{mean(lambda s: s['bytes_up_per_round']) / 1e6:.3f}",
            f"{mean(lambda s: s['bytes_down_per_round']) / 1e6:.3f}",
        ]) + " |")
    return "\n".join(lines)


def _finite_cell(values: list[float]) -> str:
    """Mean ± std in % over the seeds with a finite value; "n/a" when none has one."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return "{:.2f} ± {:.2f}".format(*[100 * v for v in mean_std(finite)]) if finite else "n/a"


def write_comparison(runs: list[ComparisonRun], out_dir: Path, title: str, command: str) -> str:
    """Write ``table.md`` (with the command at the top), ``summary.json`` and ``curves.png``."""
    table = comparison_table(runs)
    seeds = sorted({r.seed for r in runs})
    text = (f"# {title}\n\nCommand: `{command}`\n\nSeeds: {seeds}. Accuracy in % (client-mean over all "
            f"clients, personal models; round selected by mean validation accuracy). ECE: expected "
            f"calibration error of the test predictions (15 equal-width bins over the max predicted "
            f"probability), pooled over the clients, in %.\n\n{table}\n")
    (out_dir / "table.md").write_text(text)
    results.write_json(out_dir / "summary.json", [dataclasses.asdict(r) | {"history": None} for r in runs])
    curves: dict[str, list[list[Record]]] = {}
    for r in runs:
        curves.setdefault(r.algorithm, []).append(r.history)
    results.plot_curves(curves, out_dir / "curves.png", title)
    return table
