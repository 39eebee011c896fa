"""A benchmark suite: named settings (config overrides) x algorithms x seeds → one table each."""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pfedkit.core.config import RunConfig, load_config
from pfedkit.core.errors import ConfigError, DatasetNotFoundError
from pfedkit.runs.compare import ComparisonRun, run_variants, write_comparison
from pfedkit.runs.tuning import TUNING_SEED, tune_learning_rates, with_lr


@dataclass(frozen=True)
class BenchOptions:
    """Options every benchmark accepts (from the ``pfedkit bench`` command line)."""

    scale: str = "cpu"              # "cpu" (default, <= 1 h on 2 cores) or "gpu" (full data, more rounds)
    seeds: int = 3
    out: Path = Path("docs/results")
    settings: tuple[str, ...] = ()  # empty = all (at cpu scale, all not marked cpu_on_request)
    algos: tuple[str, ...] = ()     # empty = the benchmark's default list
    quiet: bool = True
    command: str = ""
    workers: int = 1                # processes running (seed, variant) pairs in parallel
    overwrite: bool = False         # replace a setting's existing page and folder under out/<bench>/
    tune_lr: tuple[float, ...] = () # per variant, train.lr from these by validation accuracy on the tuning seed


@dataclass(frozen=True)
class Setting:
    """One benchmark setting: a name, a description and config overrides per scale."""

    name: str
    title: str
    overrides: tuple[str, ...]
    gpu_overrides: tuple[str, ...] = field(default=())
    note: str = ""
    cpu_on_request: bool = False
    """At ``--scale cpu`` run only when named in ``--settings``: longer than the default run's
    hour on 2 cores (``--scale gpu`` runs it by default)."""


def chosen_settings(settings: list[Setting], opts: BenchOptions) -> list[Setting]:
    """The settings a run covers: those named in ``--settings``, else every setting (at ``--scale
    cpu`` every one not marked `Setting.cpu_on_request`)."""
    if opts.settings:
        return [s for s in settings if s.name in opts.settings]
    return [s for s in settings if opts.scale != "cpu" or not s.cpu_on_request]


@dataclass(frozen=True)
class Variant:
    """One row of a benchmark table: a label, the algorithm and its own config overrides (model
    options, hyper-parameters), applied after the setting's."""

    label: str
    algorithm: str
    overrides: tuple[str, ...] = ()

    def legend(self) -> str:
        """``- label: algorithm=... overrides`` for the page's legend."""
        return f"- {self.label}: `{' '.join((f'algorithm={self.algorithm}', *self.overrides))}`"


def variants_of(algorithms: list[str]) -> list[Variant]:
    """One plain variant per algorithm (label = name, no extra overrides)."""
    return [Variant(a, a) for a in algorithms]


def check_settings(bench: str, settings: list[Setting], opts: BenchOptions) -> None:
    """ConfigError naming any ``--settings`` name the benchmark does not have, or a selected
    setting whose results already exist (`check_outputs`); before any work."""
    names = [s.name for s in settings]
    unknown = [s for s in opts.settings if s not in names]
    if unknown:
        raise ConfigError(f"--settings: unknown {', '.join(unknown)}; {bench} has {', '.join(names)}")
    check_outputs(bench, settings, opts)


def check_outputs(bench: str, settings: list[Setting], opts: BenchOptions) -> None:
    """ConfigError when a selected setting already has results under ``<out>/<bench>/`` (its page
    ``<setting>.md`` or a non-empty ``<setting>/`` folder, e.g. the committed ones in
    docs/results) and ``opts.overwrite`` is off. Nothing is written before this check."""
    if opts.overwrite:
        return
    root = opts.out / bench
    taken = []
    for s in chosen_settings(settings, opts):
        page, folder = root / f"{s.name}.md", root / s.name
        if page.exists():
            taken.append(page)
        elif folder.is_dir() and any(folder.iterdir()):
            taken.append(folder)
    if taken:
        more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
        raise ConfigError(f"bench {bench}: {taken[0]}{more} already holds results; pass --overwrite to replace "
                          f"them or --out DIR to write elsewhere")


def run_suite(bench: str, settings: list[Setting], variants: list[Variant], opts: BenchOptions,
              base_config: str | None = None, title_prefix: str = "", legend: bool = False
              ) -> dict[str, list[ComparisonRun]]:
    """Run every selected setting x variant x seed; write ``<out>/<bench>/<setting>.md`` and, in
    ``<setting>/``, the table, per-run summaries (``summary.json``) and the curves (per-round
    files are not kept). With ``legend`` the page lists each variant's overrides.

    A setting whose dataset files are missing is skipped with a note in ``<setting>.md``.
    """
    chosen = chosen_settings(settings, opts)
    check_outputs(bench, chosen, opts)
    out_root = opts.out / bench
    out_root.mkdir(parents=True, exist_ok=True)
    command = opts.command or "pfedkit bench " + bench
    done: dict[str, list[ComparisonRun]] = {}
    for s in chosen:
        overrides = list(s.overrides) + (list(s.gpu_overrides) if opts.scale == "gpu" else [])
        configs = {v.label: load_config(base_config, overrides + list(v.overrides) +
                                        [f"algorithm={v.algorithm}", f"output={out_root / s.name}"])
                   for v in variants}
        t0 = time.perf_counter()
        print(f"[{bench}] {s.name}: {s.title} ({' '.join(overrides)})", file=sys.stderr)
        tuned = tuned_learning_rates(configs, opts.tune_lr, opts.workers)
        configs = {label: with_lr(c, tuned[label]) if tuned else c for label, c in configs.items()}
        run_dir = out_root / s.name
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            runs = run_variants(configs, list(range(opts.seeds)), None, progress=not opts.quiet,
                                log=lambda m: print(m, file=sys.stderr), workers=opts.workers)
        except DatasetNotFoundError as err:
            (out_root / f"{s.name}.md").write_text(f"# {s.title}\n\nSkipped: {err}\n")
            print(f"[{bench}] {s.name}: skipped ({err})", file=sys.stderr)
            continue
        title = title_prefix + s.title
        table = write_comparison(runs, run_dir, title, command)
        minutes = (time.perf_counter() - t0) / 60
        preamble = "Variants:\n" + "\n".join(v.legend() for v in variants) + "\n\n" if legend else ""
        if tuned:
            preamble += (f"Learning rate per method from {', '.join(f'{lr:g}' for lr in opts.tune_lr)} by validation "
                         f"accuracy on tuning seed {TUNING_SEED}: "
                         + ", ".join(f"{label} {lr:g}" for label, lr in tuned.items()) + ".\n\n")
        (out_root / f"{s.name}.md").write_text(setting_markdown(s, title, command, overrides, opts, minutes, table,
                                                                preamble))
        print(table)
        done[s.name] = runs
    return done


def tuned_learning_rates(configs: dict[str, RunConfig], lrs: tuple[float, ...], workers: int = 1
                         ) -> dict[str, float]:
    """Per variant label, the ``train.lr`` among ``lrs`` with the best validation accuracy on the
    tuning seed (`pfedkit.runs.tuning`); empty when ``lrs`` is. Test accuracy is never read."""
    if not lrs:
        return {}
    return tune_learning_rates(configs, list(lrs), log=lambda m: print(m, file=sys.stderr), workers=workers)


def setting_markdown(setting: Setting, title: str, command: str, overrides: list[str], opts: BenchOptions,
                     minutes: float, table: str, preamble: str = "") -> str:
    """The ``<setting>.md`` page: command, overrides, scale, time, protocol reminder, table."""
    return (f"# {title}\n\nCommand: `{command}`\n\nOverrides: `{' '.join(shlex.quote(o) for o in overrides)}`"
            f"\n\nScale: {opts.scale}; seeds 0..{opts.seeds - 1}; {minutes:.1f} min. {setting.note}\n\n"
            f"Accuracy in % over all clients with personal models, round selected by client-mean "
            f"validation accuracy. Curves: `{setting.name}/curves.png`.\n\n{preamble}{table}\n")
