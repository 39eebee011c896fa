"""``pfedkit bench gm-ablation``: pFedGM's required ablations (spec §8) on two settings.

Each variant is pFedGM with ``hp.pfedgm.*`` overrides (no extra algorithms are registered);
every variant sees the same partitions, seeds and initial weights as the default. One table
per setting, rows labelled by variant, written to ``docs/results/gm-ablation/<setting>.md``
(runs under ``docs/results/gm-ablation/<setting>/<variant>/pfedgm/seed<s>/``).
``--algos`` is not used here: every variant runs.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any

from pfedkit.core.config import load_config
from pfedkit.core.errors import ConfigError, DatasetNotFoundError
from pfedkit.runs.bench.gm import SETTINGS as GM_SETTINGS
from pfedkit.runs.bench.suite import BenchOptions, Setting, setting_markdown
from pfedkit.runs.compare import ComparisonRun, run_comparison, write_comparison

BENCH = "gm-ablation"
ALGO = "pfedgm"

VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("pfedgm (defaults)", {}),
    ("no navigator (linear head + CE)", {"navigator": False}),
    ("lambda_local = 0", {"lambda_local": 0.0}),
    ("no virtual features", {"virtual_weight": 0.0, "bank_size": 0}),
    ("gain = 0 (global means)", {"gain": "global"}),
    ("gain = 1 (local means)", {"gain": "local"}),
    ("pFedFDA-style interpolation (CV beta)", {"gain": "interpolate"}),
    ("no global filter (plain pooling)", {"global_filter": False}),
    ("spec's noise model: Q from anchor shift, prior spread P_c only",
     {"noise_source": "anchors", "prior_uncertainty": False}),
    ("Q from anchor shift", {"noise_source": "anchors"}),
    ("prior spread P_c only (no U_c + Q_c)", {"prior_uncertainty": False}),
    ("tau = 0.5", {"resample_tau": 0.5}),
    ("tau = 1", {"resample_tau": 1.0}),
    ("Student-t predictive", {"predictive": "student_t"}),
    ("gain form full", {"gain_form": "full"}),
    ("gain form diag", {"gain_form": "diag"}),
    ("gain form scalar", {"gain_form": "scalar"}),
]
"""(row label, hp.pfedgm overrides). Rows that coincide with the defaults are kept on purpose,
so each flag's two sides are both in the table whatever the defaults become."""

_BY_NAME = {s.name: s for s in GM_SETTINGS}
SETTINGS: list[Setting] = [_BY_NAME["fmnist-dir0.1"], _BY_NAME["fmnist-corrupt-dir0.5"]]
"""Label skew with partial participation, and environmental corruption (from ``bench gm``)."""


def run_setting(setting: Setting, opts: BenchOptions, variants: list[tuple[str, dict[str, Any]]] = VARIANTS
                ) -> list[ComparisonRun] | None:
    """Run every variant of one setting over ``opts.seeds`` seeds; write its table.

    Returns the runs (``algorithm`` = the variant label), or None when the data set is missing.
    """
    out_root = opts.out / BENCH
    run_dir = out_root / setting.name
    run_dir.mkdir(parents=True, exist_ok=True)
    overrides = list(setting.overrides) + (list(setting.gpu_overrides) if opts.scale == "gpu" else [])
    cfg = load_config(None, overrides + [f"output={run_dir}"])
    command = opts.command or f"pfedkit bench {BENCH}"
    print(f"[{BENCH}] {setting.name}: {setting.title} ({' '.join(overrides)})", file=sys.stderr)
    t0 = time.perf_counter()
    runs: list[ComparisonRun] = []
    for label, hp in variants:
        cfg_v = dataclasses.replace(cfg, hp={ALGO: dict(hp)})
        try:
            done = run_comparison(cfg_v, [ALGO], list(range(opts.seeds)), None,
                                  progress=not opts.quiet, log=lambda m: print(m, file=sys.stderr))
        except DatasetNotFoundError as err:
            (out_root / f"{setting.name}.md").write_text(f"# {setting.title}\n\nSkipped: {err}\n")
            print(f"[{BENCH}] {setting.name}: skipped ({err})", file=sys.stderr)
            return None
        print(f"[{BENCH}]   variant {label}: hp.{ALGO} = {hp}", file=sys.stderr)
        runs += [dataclasses.replace(r, algorithm=label) for r in done]
    title = f"pFedGM ablations: {setting.title}"
    table = write_comparison(runs, run_dir, title, command)
    minutes = (time.perf_counter() - t0) / 60
    legend = "\n".join(f"- {label}: `{' '.join(f'hp.{ALGO}.{k}={v}' for k, v in hp.items()) or 'defaults'}`"
                       for label, hp in variants)
    text = setting_markdown(setting, title, command, overrides, opts, minutes, table, f"Variants:\n{legend}\n\n")
    (out_root / f"{setting.name}.md").write_text(text)
    print(table)
    return runs


def run(opts: BenchOptions) -> int:
    """Run the ablations on the selected settings (both by default)."""
    names = {s.name for s in SETTINGS}
    unknown = [s for s in opts.settings if s not in names]
    if unknown:
        raise ConfigError(f"--settings: unknown {', '.join(unknown)}; {BENCH} has {', '.join(sorted(names))}")
    if opts.algos:
        print(f"[{BENCH}] --algos is ignored: every pFedGM variant runs", file=sys.stderr)
    for s in SETTINGS:
        if not opts.settings or s.name in opts.settings:
            run_setting(s, opts)
    return 0
