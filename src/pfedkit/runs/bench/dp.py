"""``pfedkit bench dp``: accuracy against the privacy budget (issue 13, item 5).

FedAvg, FedRep, pFedFDA and pFedGM each run at a target epsilon of 1, 3 and 8 (record-level
(epsilon, delta)-DP per client, delta 1e-5, docs/privacy.md) and without privacy (epsilon = inf),
on the same partitions, seeds and initial weights, with the same local optimiser and round
budget. Local (nothing shared, epsilon 0 at any budget) runs once as the floor a private
federation has to beat. Output under ``docs/results/dp/``: ``<setting>.md`` (the command, the
accuracy table by epsilon with the epsilon each run actually spent, the full comparison table)
and ``<setting>/`` (``accuracy_vs_epsilon.png``, the learning curves, per-run summaries).

Scales:
  * ``cpu`` (default): Fashion-MNIST subsampled to 6,000 images over 10 clients (about 400
    training records each: DP's noise is divided by the client's sample size, so fewer, larger
    clients than in ``bench gm``), Dirichlet 0.5, the small CNN (width 16, 64 features),
    10 rounds of one local epoch, batch 32. See `CPU_BUDGET_NOTE`.
  * ``gpu``: 30,000 images, more rounds, ``device=auto``.
"""

from __future__ import annotations

import math
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pfedkit.algorithms.registry import check_privacy_support
from pfedkit.core.config import PrivacyConfig, load_config
from pfedkit.core.metrics import mean_std
from pfedkit.runs.bench.suite import BenchOptions, Setting, Variant, check_settings
from pfedkit.runs.compare import ComparisonRun, comparison_table, run_variants, write_comparison

BENCH = "dp"
METHODS = ("fedavg", "fedrep", "pfedfda", "pfedgm")
EPSILONS = (1.0, 3.0, 8.0, math.inf)
REFERENCE = "local"
"""Shares nothing: private at any budget (epsilon 0); one row, run once."""

COMMON = (
    "data.dataset=fashion-mnist", "data.max_samples=6000", "data.num_clients=10", "partition.scheme=dirichlet",
    "partition.alpha=0.5", "partition.min_size=10", "model.cnn.width=16", "model.cnn.feature_dim=64",
    "train.rounds=10", "train.local_epochs=1", "train.batch_size=32", "train.lr=0.05", "train.momentum=0.9",
    "eval_every=2",
)
"""CPU scale (the setting's own overrides come after and win)."""

GPU = ("data.max_samples=30000", "model.cnn.width=32", "model.cnn.feature_dim=128", "train.rounds=40",
       "eval_every=4", "device=auto")
"""Appended at ``--scale gpu``."""

SETTINGS = [
    Setting("fmnist-dir0.5", "Fashion-MNIST, 10 clients, Dirichlet 0.5: accuracy against epsilon", COMMON, GPU,
            note="Record-level DP per client, delta 1e-5, noise calibrated before training for a client that "
                 "takes part in every round (docs/privacy.md)."),
]

CPU_BUDGET_NOTE = (
    "Measured single-threaded on the shared 2-core machine, one seed of the CPU scale: FedAvg 18 s without "
    "privacy and 65 s at epsilon 3 (per-example gradients cost about 3x a plain step), FedRep 36 / 131 s (its 10 "
    "head epochs run DP-SGD too), pFedFDA 84 / 94 s, pFedGM 44 / 74 s; about 21 minutes per seed in all. "
    "The default run (3 seeds, --workers 2, with other jobs on the machine) took 36.3 minutes."
)


@dataclass(frozen=True)
class Cell:
    """One (method, epsilon) entry: its label in the comparison and its overrides."""

    method: str
    epsilon: float

    @property
    def label(self) -> str:
        return f"{self.method} eps={epsilon_text(self.epsilon)}"

    def variant(self) -> Variant:
        extra = () if math.isinf(self.epsilon) else (f"privacy.epsilon={self.epsilon:g}",)
        return Variant(self.label, self.method, extra)


def epsilon_text(eps: float) -> str:
    """``1``, ``3``, ``inf``."""
    return "inf" if math.isinf(eps) else f"{eps:g}"


def run(opts: BenchOptions) -> int:
    """Run every method at every epsilon on the selected setting(s); write the pages and plots."""
    check_settings(BENCH, SETTINGS, opts)
    methods = list(opts.algos) or list(METHODS)
    for m in methods:
        check_privacy_support(m, PrivacyConfig(epsilon=1.0))
    cells = [Cell(m, e) for m in methods for e in EPSILONS]
    variants = [c.variant() for c in cells] + [Variant(REFERENCE, REFERENCE)]
    for s in [s for s in SETTINGS if not opts.settings or s.name in opts.settings]:
        run_setting(s, cells, variants, opts)
    return 0


def run_setting(setting: Setting, cells: list[Cell], variants: list[Variant], opts: BenchOptions) -> None:
    """One setting: run the variants over the seeds, write ``<setting>.md`` and ``<setting>/``."""
    overrides = list(setting.overrides) + (list(setting.gpu_overrides) if opts.scale == "gpu" else [])
    out_root = opts.out / BENCH
    run_dir = out_root / setting.name
    command = opts.command or f"pfedkit bench {BENCH}"
    configs = {v.label: load_config(None, overrides + list(v.overrides) + [f"algorithm={v.algorithm}"])
               for v in variants}
    print(f"[{BENCH}] {setting.name}: {setting.title}", file=sys.stderr)
    t0 = time.perf_counter()
    runs = run_variants(configs, list(range(opts.seeds)), None, progress=not opts.quiet,
                        log=lambda m: print(m, file=sys.stderr), workers=opts.workers)
    minutes = (time.perf_counter() - t0) / 60
    run_dir.mkdir(parents=True, exist_ok=True)
    write_comparison(runs, run_dir, setting.title, command)
    plot_accuracy_vs_epsilon(runs, cells, run_dir / "accuracy_vs_epsilon.png", setting.title)
    page = dp_page(setting, runs, cells, command, overrides, opts, minutes)
    (out_root / f"{setting.name}.md").write_text(page)
    print(page)


def accuracy(run: ComparisonRun) -> float:
    """Client-mean test accuracy at the val-selected round, in %."""
    return 100 * run.summary["selected"]["test"]["mean"]


def spent(run: ComparisonRun) -> float:
    """The epsilon the run spent (max over clients; 0 when private and nothing was released, inf
    when not private)."""
    return run.summary.get("privacy", {}).get("epsilon", math.inf)


def dp_table(runs: list[ComparisonRun], cells: list[Cell]) -> str:
    """Markdown: a row per method, a column per target epsilon; each cell is the test accuracy
    (mean ± std over seeds, %) and the largest epsilon any client spent over the seeds."""
    methods = list(dict.fromkeys(c.method for c in cells))
    header = "| method | " + " | ".join(f"target eps = {epsilon_text(e)}" for e in EPSILONS) + " |"
    lines = [header, "|---|" + "---|" * len(EPSILONS)]
    for m in methods:
        row = [m]
        for e in EPSILONS:
            rs = [r for r in runs if r.algorithm == Cell(m, e).label]
            if not rs:
                row.append("-")
                continue
            mean, std = mean_std([accuracy(r) for r in rs])
            eps = max(spent(r) for r in rs)
            row.append(f"{mean:.2f} ± {std:.2f} ({f'spent {eps:.2f}' if math.isfinite(eps) else 'no DP'})")
        lines.append("| " + " | ".join(row) + " |")
    ref = [r for r in runs if r.algorithm == REFERENCE]
    if ref:
        mean, std = mean_std([accuracy(r) for r in ref])
        cell = f"{mean:.2f} ± {std:.2f}"
        lines.append(f"| {REFERENCE} (shares nothing: eps 0) | " + " | ".join([cell] * len(EPSILONS)) + " |")
    return "\n".join(lines)


def dp_page(setting: Setting, runs: list[ComparisonRun], cells: list[Cell], command: str, overrides: list[str],
            opts: BenchOptions, minutes: float) -> str:
    """The ``<setting>.md`` page: command first, then the table by epsilon and the full table."""
    return (f"# {setting.title}\n\nCommand: `{command}`\n\n"
            f"Overrides: `{' '.join(shlex.quote(o) for o in overrides)}`\n\n"
            f"Scale: {opts.scale}; seeds 0..{opts.seeds - 1}; {minutes:.1f} min. {setting.note}\n\n"
            f"Test accuracy in % (client mean over all clients with their personal models, round selected "
            f"by client-mean validation accuracy), mean ± std over seeds. \"spent\": the largest epsilon any "
            f"client spent (over the seeds), from opacus's RDP accountant. Plot: "
            f"`{setting.name}/accuracy_vs_epsilon.png`; learning curves: `{setting.name}/curves.png`.\n\n"
            f"{dp_table(runs, cells)}\n\n## Every run\n\n{comparison_table(runs)}\n")


def plot_accuracy_vs_epsilon(runs: list[ComparisonRun], cells: list[Cell], path: Path, title: str) -> None:
    """Accuracy (mean ± std over seeds) against the target epsilon, one line per method; the
    no-privacy point sits at the right end, Local as a dashed horizontal line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pfedkit.runs.results import curve_style

    finite = [e for e in EPSILONS if math.isfinite(e)]
    inf_x = max(finite) * 2.5
    fig, ax = plt.subplots(figsize=(6.5, 4.5), layout="constrained")
    for i, m in enumerate(dict.fromkeys(c.method for c in cells)):
        xs, means, stds = [], [], []
        for e in EPSILONS:
            rs = [r for r in runs if r.algorithm == Cell(m, e).label]
            if rs:
                mean, std = mean_std([accuracy(r) for r in rs])
                xs.append(inf_x if math.isinf(e) else e)
                means.append(mean)
                stds.append(std)
        ax.errorbar(xs, means, yerr=stds, label=m, capsize=3, **curve_style(i))
    ref = [accuracy(r) for r in runs if r.algorithm == REFERENCE]
    if ref:
        ax.axhline(mean_std(ref)[0], color="grey", ls="--", lw=1, label=f"{REFERENCE} (eps 0)")
    ax.set_xscale("log")
    ax.set_xticks(finite + [inf_x], [epsilon_text(e) for e in finite] + ["inf\n(no DP)"])
    ax.minorticks_off()
    ax.set_xlabel("target epsilon per client (delta 1e-5)")
    ax.set_ylabel("client-mean test accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)

