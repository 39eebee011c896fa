"""``pfedkit bench gm-audit``: does each pFedGM component earn its place, at small and at large
scale (issue 14)? Each row removes or fixes one component; the same partitions, seeds and
initial weights for every row. The small setting is ``bench gm``'s Fashion-MNIST Dirichlet 0.1
(2,500 samples, 10 rounds, half the clients per round), the large ones ``bench gm-scale``'s
10,000-sample settings (20 rounds: Dirichlet 0.1, quantity skew with Dirichlet 0.3, 100 clients
at 20 % per round; 38 min with ``--workers 2`` on 2 cores); on request (``--settings``; 15 runs,
41 min with ``--workers 2``) the full one, ``bench gm-scale``'s all 70,000 images, with the rows that moved
accuracy there (`FULL_DATA_COMPONENTS`). The tables' rare / unseen columns give the accuracy on
the classes a client holds 1-9 / 0 training samples of, where the local fusion's gain matters.
"""

from __future__ import annotations

import dataclasses
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
    ("without personal covariance: Sigma_k = Sigma_g (nu0 = 1e9)", {"nu0": 1e9}),
    ("covariance prior as strong as the feature dimension (nu0 = 64, not 10)", {"nu0": 64.0}),
]
"""(row label, hp.pfedgm overrides): the defaults, then each component taken out, then one
candidate change: the personal covariance's pseudo-count nu0 raised to the feature dimension (with
nu0 = 10, a client of the 100-client setting, about 65 training samples, gives its own
64-dimensional covariance the weight kappa = 0.87)."""

FULL_DATA_COMPONENTS: list[tuple[str, dict[str, Any]]] = [
    *(row for row in COMPONENTS if row[0] in {"pfedgm (defaults)", "without navigator (linear head + CE)",
                                              "without L_local (lambda_local = 0)", "without virtual features"}),
    ("without virtual features and L_local", {"lambda_local": 0.0, "virtual_weight": 0.0, "bank_size": 0}),
]
"""The full-data setting's rows: a run there costs about 5 times a large one, so only the rows
that moved accuracy by more than 0.5 points on one seed of it at lr 0.05 (the defaults 94.27; without
navigator 94.84, L_local 95.12, virtual features 95.05; gain = 1 94.44), and the two dual-objective
terms taken out together."""

def _audited(name: str, scale: str, source: Setting) -> Setting:
    """``source`` (a ``bench gm`` / ``gm-scale`` setting) renamed for this benchmark; overrides,
    note and ``cpu_on_request`` carried over."""
    return dataclasses.replace(source, name=name, title=f"pFedGM component audit, {scale}: {source.title}")


_SCALE_BY_NAME = {s.name: s for s in SCALE_SETTINGS}
SCALED_SETTINGS: list[Setting] = [
    _audited("small-fmnist-dir0.1", "small", {s.name: s for s in GM_SETTINGS}["fmnist-dir0.1"]),
    *(_audited(f"large-{name}", "large", _SCALE_BY_NAME[name])
      for name in ("fmnist-10k-dir0.1", "fmnist-10k-qty-dir0.3", "fmnist-100c-dir0.3")),
]
"""Run with every row of `COMPONENTS`."""
FULL_DATA_SETTING = _audited("full-fmnist-dir0.1", "full data", _SCALE_BY_NAME["fmnist-full-dir0.1"])
"""Run with `FULL_DATA_COMPONENTS`; at ``--scale cpu`` only on request, as in ``gm-scale``."""
SETTINGS: list[Setting] = [*SCALED_SETTINGS, FULL_DATA_SETTING]


def run(opts: BenchOptions) -> int:
    """Every component row on the selected settings (small and large by default; the full-data
    setting runs `FULL_DATA_COMPONENTS`)."""
    check_settings(BENCH, SETTINGS, opts)
    if opts.algos:
        print(f"[{BENCH}] --algos is ignored: every pFedGM row runs", file=sys.stderr)
    run_suite(BENCH, SCALED_SETTINGS, ablation_variants(COMPONENTS), opts, legend=True)
    run_suite(BENCH, [FULL_DATA_SETTING], ablation_variants(FULL_DATA_COMPONENTS), opts, legend=True)
    return 0
