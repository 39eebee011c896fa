"""``pfedkit bench bpt-ablation``: pFedBayesPT's required ablations (spec §7).

Each row is pFedBayesPT with ``hp.pfedbayespt.*`` or ``model.vit.*`` overrides: deterministic
instance generator (no prior, no KL), explicit-only Gaussian posterior (amortised VI, no implicit
mixing), K in {1, 8, 32}, S in {1, 8} (and the mean prompt), L in {4, 10}, shallow vs deep, shared
vs local head. The degree of intra-client domain mixing is the setting: the same rows run on
Dirichlet 0.1 and 1.0 over domains (``bench bpt``'s mixed settings).
"""

from __future__ import annotations

import sys

from pfedkit.runs.bench.bpt import SETTINGS as BPT_SETTINGS
from pfedkit.runs.bench.bpt import with_backbone
from pfedkit.runs.bench.suite import BenchOptions, Setting, Variant, check_settings, run_suite

BENCH = "bpt-ablation"
ALGO = "pfedbayespt"


def _v(label: str, *overrides: str) -> Variant:
    return Variant(label, ALGO, ("model.vit.prompts=10", *overrides))


VARIANTS = [
    _v("pfedbayespt (defaults: K=8, S=8, L=10, shallow, local head)"),
    _v("deterministic instance generator (no prior, no KL)", "hp.pfedbayespt.posterior=deterministic"),
    _v("explicit-only Gaussian posterior (no implicit mixing)", "hp.pfedbayespt.posterior=explicit"),
    _v("K = 1", "hp.pfedbayespt.K=1"),
    _v("K = 32", "hp.pfedbayespt.K=32"),
    _v("S = 1 (one prompt sample)", "hp.pfedbayespt.predict=single"),
    _v("mean prompt (eps = xi = 0)", "hp.pfedbayespt.predict=mean"),
    _v("L = 4", "model.vit.prompts=4"),
    _v("deep prompts", "model.vit.deep=true"),
    _v("shared head", "hp.pfedbayespt.head=shared"),
]
"""Rows; the defaults' row stands for K = 8, S = 8, L = 10, shallow and local head."""

_BY_NAME = {s.name: s for s in BPT_SETTINGS}
SETTINGS: list[Setting] = [_BY_NAME["md-mix0.1"], _BY_NAME["md-mix1.0"]]


def run(opts: BenchOptions) -> int:
    """Run every variant on the selected settings (both by default)."""
    check_settings(BENCH, SETTINGS, opts)
    if opts.algos:
        print(f"[{BENCH}] --algos is ignored: every pFedBayesPT variant runs", file=sys.stderr)
    run_suite(BENCH, with_backbone(SETTINGS, opts.scale), VARIANTS, opts, title_prefix="pFedBayesPT ablations: ",
              legend=True)
    return 0
