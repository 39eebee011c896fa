"""``pfedkit bench bpt``: the benchmark behind pFedBayesPT's claim ("consistently outperforms
existing pFL methods under both feature and label heterogeneity", above all when a client's data
mixes domains).

Every method runs on the same frozen ViT, pretrained offline by `pfedkit pretrain` (cached; the
bench trains it first if the cache lacks it), with the same partitions, seeds, initial weights,
rounds, local epochs and optimiser. Prompt methods (Local-VPT, FedVPT, FedVPT-LH, pFedPG,
pFedBayesPT) tune ``L`` prompt tokens; head methods (local and FedAvg linear probes, FedAvg +
fine-tuning, FedRep-style local heads, pFedFDA, pFedGM) run on the cached prompt-free features.
One table per setting in ``docs/results/bpt/<setting>.md``.

Scales: ``cpu`` (default) digits-md subsampled to 1,200 images, 8 clients, vit_cpu_tiny, 10
rounds of one local epoch, Adam lr 0.01 for every method, sized to about 45 minutes on 2 cores
with ``--workers 2``; ``gpu`` all 16.5k images, 20 clients,
vit_cpu_small, 50 rounds.
"""

from __future__ import annotations

import sys

from pfedkit.core.errors import ConfigError
from pfedkit.runs.bench.suite import BenchOptions, Setting, Variant, check_settings, run_suite
from pfedkit.runs.pretrain import PretrainOptions, pretrain_backbone

BENCH = "bpt"

COMMON = (
    "data.dataset=digits-md", "data.max_samples=1200", "data.num_clients=8", "partition.min_size=20",
    "model.name=vit", "train.rounds=10", "train.local_epochs=1", "train.batch_size=32",
    "train.optimizer=adam", "train.lr=0.01", "eval_every=5",
)
"""CPU scale, shared by every setting."""

GPU = ("data.max_samples=0", "data.num_clients=20", "train.rounds=50", "eval_every=5", "device=auto")
"""Appended at ``--scale gpu``."""

SETTINGS = [
    Setting("md-one-domain", "digits-md, 8 clients, one domain per client (feature skew), IID labels within",
            COMMON + ("partition.scheme=domain",), GPU),
    Setting("md-mix0.1", "digits-md, 8 clients, domains mixed inside clients: Dirichlet 0.1 over domains, "
            "Dirichlet 1.0 over labels", COMMON + ("partition.scheme=domain-dirichlet", "partition.alpha_domain=0.1",
                                                  "partition.alpha=1.0"), GPU),
    Setting("md-mix1.0", "digits-md, 8 clients, domains mixed inside clients: Dirichlet 1.0 over domains, "
            "Dirichlet 1.0 over labels", COMMON + ("partition.scheme=domain-dirichlet", "partition.alpha_domain=1.0",
                                                  "partition.alpha=1.0"), GPU),
    Setting("md-label0.3", "digits-md, 8 clients, label skew: Dirichlet 0.3 over labels (domains as they fall)",
            COMMON + ("partition.scheme=dirichlet", "partition.alpha=0.3"), GPU),
]

PROMPTS = 10
PROMPTED = ("local_vpt", "fedvpt", "fedvpt_lh", "pfedpg", "pfedbayespt")
ON_FEATURES = ("local_probe", "linear_probe", "fedavg_ft", "fedrep", "pfedfda", "pfedgm")


def default_variants(algorithms: tuple[str, ...] = ()) -> list[Variant]:
    """Each method with the model options its family needs (prompt tokens or none)."""
    chosen = algorithms or ON_FEATURES + PROMPTED
    out = []
    for name in chosen:
        if name not in PROMPTED + ON_FEATURES:
            raise ConfigError(f"--algos: {name!r} is not in bench {BENCH}; choose from {', '.join(ON_FEATURES + PROMPTED)}")
        prompts = PROMPTS if name in PROMPTED else 0
        out.append(Variant(name, name, (f"model.vit.prompts={prompts}",)))
    return out


def backbone_override(scale: str) -> str:
    """``model.vit.checkpoint=PATH`` of the offline backbone for ``scale`` (pretrained now if the
    cache lacks it)."""
    path = pretrain_backbone(PretrainOptions.for_scale(scale, threads=0 if scale == "gpu" else 2),
                             log=lambda m: print(f"[{BENCH}] pretrain: {m}", file=sys.stderr))
    return f"model.vit.checkpoint={path}"


def with_backbone(settings: list[Setting], scale: str) -> list[Setting]:
    """The settings with the pretrained backbone's checkpoint in their overrides."""
    ckpt = backbone_override(scale)
    return [Setting(s.name, s.title, s.overrides + (ckpt,), s.gpu_overrides, s.note) for s in settings]


def run(opts: BenchOptions) -> int:
    """Run the selected settings (all by default) with every method (or ``opts.algos``)."""
    check_settings(BENCH, SETTINGS, opts)
    variants = default_variants(opts.algos)
    run_suite(BENCH, with_backbone(SETTINGS, opts.scale), variants, opts, legend=True)
    return 0
