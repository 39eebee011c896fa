"""``pfedkit bench gm-ablation``: pFedGM's required ablations (spec §8) on two settings.

Each variant is pFedGM with ``hp.pfedgm.*`` overrides (no extra algorithms are registered);
every variant sees the same partitions, seeds and initial weights as the default. One table
per setting, rows labelled by variant, written to ``docs/results/gm-ablation/<setting>.md``
(runs under ``docs/results/gm-ablation/<setting>/<variant>/pfedgm/seed<s>/``).
``--algos`` is not used here: every variant runs.
"""

from __future__ import annotations

import sys
from typing import Any

from pfedkit.runs.bench.gm import SETTINGS as GM_SETTINGS
from pfedkit.runs.bench.suite import BenchOptions, Setting, Variant, check_settings, run_suite

BENCH = "gm-ablation"
ALGO = "pfedgm"

VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("pfedgm (defaults)", {}),
    ("no navigator (linear head + CE)", {"navigator": False}),
    ("navigator stepped on its anchors m_c (not its logit weights)", {"navigator_coords": "anchors"}),
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


def ablation_variants(variants: list[tuple[str, dict[str, Any]]] = VARIANTS) -> list[Variant]:
    """Each (label, hp) as a pFedGM variant with ``hp.pfedgm.*`` overrides."""
    return [Variant(label, ALGO, tuple(f"hp.{ALGO}.{k}={v}" for k, v in hp.items())) for label, hp in variants]


def run(opts: BenchOptions) -> int:
    """Run the ablations on the selected settings (both by default)."""
    check_settings(BENCH, SETTINGS, opts)
    if opts.algos:
        print(f"[{BENCH}] --algos is ignored: every pFedGM variant runs", file=sys.stderr)
    run_suite(BENCH, SETTINGS, ablation_variants(), opts, title_prefix="pFedGM ablations: ", legend=True)
    return 0
