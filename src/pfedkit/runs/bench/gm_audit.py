"""``pfedkit bench gm-audit``: does each pFedGM component earn its place, at small and at large
scale (issue 14)? Each row removes or fixes one component; the same partitions, seeds and
initial weights for every row. The small setting is ``bench gm``'s Fashion-MNIST Dirichlet 0.1
(2,500 samples, 10 rounds, half the clients per round), the large one ``bench gm-scale``'s
(10,000 samples, 20 rounds, every client). The tables' rare / unseen columns give the accuracy on
the classes a client holds 1-9 / 0 training samples of, where the local fusion's gain matters.
"""

from __future__ import annotations

import sys
from typing import Any

from pfedkit.runs.bench.gm import SETTINGS as GM_SETTINGS
from pfedkit.runs.bench.gm_ablation import ablation_variants
from pfedkit.runs.bench.gm_scale import SETTINGS as SCALE_SETTINGS
from pfedkit.runs.bench.suite import BenchOptions, Setting, check_settings, run_suite

BENCH = "gm-audit"

COMPONENTS: list[tuple[str, dict[str, Any]]] = [
    ("pfedgm (defaults)", {}),
    ("without navigator (linear head + CE)", {"navigator": False}),
    ("navigator stepped on its anchors m_c, not its logit weights (before issue 14's fix)",
     {"navigator_coords": "anchors"}),
    ("without L_local (lambda_local = 0)", {"lambda_local": 0.0}),
    ("without virtual features", {"virtual_weight": 0.0, "bank_size": 0}),
    ("without re-sampling weights (tau = 0)", {"resample_tau": 0.0}),
    ("without global filter (plain pooling)", {"global_filter": False}),
    ("without local fusion: gain = 1 (local means)", {"gain": "local"}),
    ("without local statistics: gain = 0 (global means)", {"gain": "global"}),
]
"""(row label, hp.pfedgm overrides): the defaults, then each component taken out."""

_SMALL = {s.name: s for s in GM_SETTINGS}["fmnist-dir0.1"]
_LARGE = {s.name: s for s in SCALE_SETTINGS}["fmnist-10k-dir0.1"]
SETTINGS: list[Setting] = [
    Setting("small-fmnist-dir0.1", "pFedGM component audit, small: " + _SMALL.title, _SMALL.overrides,
            _SMALL.gpu_overrides, _SMALL.note),
    Setting("large-fmnist-10k-dir0.1", "pFedGM component audit, large: " + _LARGE.title, _LARGE.overrides,
            _LARGE.gpu_overrides, _LARGE.note),
]


def run(opts: BenchOptions) -> int:
    """Every component row on the selected settings (both by default)."""
    check_settings(BENCH, SETTINGS, opts)
    if opts.algos:
        print(f"[{BENCH}] --algos is ignored: every pFedGM row runs", file=sys.stderr)
    run_suite(BENCH, SETTINGS, ablation_variants(COMPONENTS), opts, legend=True)
    return 0
