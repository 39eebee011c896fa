"""``pfedkit bench gm-scale``: pFedGM against the strongest baselines at the scale users run
(issue 14): more data per client, more rounds, a larger federation with partial participation,
and quantity skew combined with label skew.

``bench gm`` keeps its small settings (2,500 samples, 10 rounds) for all 18 methods; here each
setting is larger, so by default only pFedGM and the baselines that led ``bench gm`` run
(``--algos`` for others). Use ``--tune-lr`` to give every method its own learning rate, chosen
on validation accuracy of a tuning seed.

Cost on 2 CPU cores with ``--workers 2`` (one thread per run): the three 10k-image settings
6-14 min each, a full-data one (all 70,000 images) 59-67 min, so at ``--scale cpu`` the full-data
settings run only when named in ``--settings``; see each page's minutes.
"""

from __future__ import annotations

from pfedkit.runs.bench.gm import COMMON, GPU
from pfedkit.runs.bench.suite import BenchOptions, Setting, check_settings, run_suite, variants_of

BENCH = "gm-scale"

LARGE = COMMON + ("train.rounds=20", "data.dataset=fashion-mnist")
"""``bench gm``'s model and optimiser, 20 rounds (later overrides win)."""

SETTINGS = [
    Setting("fmnist-10k-dir0.1", "Fashion-MNIST 10,000 samples, 20 clients, Dirichlet 0.1, 20 rounds",
            LARGE + ("data.max_samples=10000", "partition.scheme=dirichlet", "partition.alpha=0.1"), GPU),
    Setting("fmnist-10k-qty-dir0.3", "Fashion-MNIST 10,000 samples, 20 clients, log-normal sizes (sigma 1) and "
            "Dirichlet 0.3 labels together, 20 rounds",
            LARGE + ("data.max_samples=10000", "partition.scheme=quantity-dirichlet", "partition.quantity_sigma=1",
                     "partition.alpha=0.3"), GPU),
    Setting("fmnist-100c-dir0.3", "Fashion-MNIST 10,000 samples, 100 clients, Dirichlet 0.3, 20 % per round, "
            "20 rounds",
            LARGE + ("data.max_samples=10000", "data.num_clients=100", "partition.scheme=dirichlet",
                     "partition.alpha=0.3", "train.client_fraction=0.2", "partition.min_size=20", "eval_every=4"), GPU,
            note="Partial participation: 20 of 100 clients per round."),
    Setting("fmnist-full-dir0.1", "Fashion-MNIST (all 70,000 images), 20 clients, Dirichlet 0.1, 20 rounds",
            LARGE + ("data.max_samples=0", "partition.scheme=dirichlet", "partition.alpha=0.1", "eval_every=4"), GPU,
            cpu_on_request=True),
    Setting("fmnist-full-path2", "Fashion-MNIST (all 70,000 images), 20 clients, pathological 2 classes/client, "
            "20 rounds",
            LARGE + ("data.max_samples=0", "partition.scheme=pathological", "partition.classes_per_client=2",
                     "eval_every=4"), GPU, cpu_on_request=True),
]

DEFAULT_ALGORITHMS = ["local", "fedper", "fedrep", "fedbabu", "fedpac", "pfedfda", "pfedgm"]
"""The methods run by default: Local (the floor) and the five baselines that came second to fifth in
the ``bench gm`` settings (docs/results/gm), then pFedGM."""


def run(opts: BenchOptions) -> int:
    """Run the selected settings (all by default) with ``opts.algos`` or `DEFAULT_ALGORITHMS`."""
    check_settings(BENCH, SETTINGS, opts)
    run_suite(BENCH, SETTINGS, variants_of(list(opts.algos) or DEFAULT_ALGORITHMS), opts)
    return 0
