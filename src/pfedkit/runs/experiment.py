"""Wire a config into a simulation: data → model → algorithm → Simulator → results folder."""

from __future__ import annotations

from pathlib import Path

import torch

from pfedkit.algorithms.registry import build_algorithm
from pfedkit.core.config import RunConfig, to_dict
from pfedkit.core.seeding import derive_seed
from pfedkit.data.setup import FederatedData, build_federated_data
from pfedkit.engines.callbacks import Callback, Checkpointer
from pfedkit.engines.progress import ProgressBar
from pfedkit.engines.simulate import SimulationResult, SimulationSettings, Simulator
from pfedkit.models import build_model
from pfedkit.models.split import SplitModel
from pfedkit.runs import results


def seeded_model(cfg: RunConfig, input_shape: tuple[int, int, int], num_classes: int) -> SplitModel:
    """The configured model with weights drawn from a generator seeded by ``cfg.seed`` only,
    so every algorithm of a comparison starts from the same weights (global RNG untouched)."""
    m = cfg.model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(cfg.seed, 0xD0DE))
        return build_model(m.name, input_shape, num_classes, m.options_for(m.name))


def simulate_config(cfg: RunConfig, fed: FederatedData | None = None, out_dir: Path | None = None,
                    resume: bool = False, progress: bool = True) -> SimulationResult:
    """Run ``cfg.algorithm`` on the configured data (or the given ``fed``), writing results to
    ``out_dir`` when given (config, metrics.jsonl, summary.json, curve.png, checkpoint.pt)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    fed = fed or build_federated_data(cfg.data, cfg.partition, cfg.seed)
    model = seeded_model(cfg, fed.input_shape, fed.num_classes)
    algo = build_algorithm(cfg.algorithm, model, cfg.hparams(), cfg.train, fed.num_classes,
                           cfg.seed)
    settings = SimulationSettings(cfg.seed, cfg.train.rounds, cfg.train.client_fraction, cfg.eval_every, cfg.device)
    callbacks: list[Callback] = [ProgressBar(enabled=progress)]
    resume_from = None
    if out_dir is not None:
        results.write_config(out_dir, {**to_dict(cfg), "partition_hash": fed.partition.hash})
        ckpt = out_dir / "checkpoint.pt"
        resume_from = Checkpointer.load(ckpt) if resume else None
        callbacks.append(results.MetricsWriter(out_dir))
        if cfg.checkpoint_every:
            callbacks.append(Checkpointer(ckpt, cfg.checkpoint_every))
    result = Simulator(algo, fed.clients, settings, callbacks).run(resume_from)
    if out_dir is not None:
        results.write_json(out_dir / "summary.json", {"algorithm": cfg.algorithm, "seed": cfg.seed,
                                                      "partition_hash": fed.partition.hash, **result.summary})
        results.plot_curves({cfg.algorithm: [result.history]}, out_dir / "curve.png", f"{cfg.algorithm} on {cfg.data.dataset}")
    return result
