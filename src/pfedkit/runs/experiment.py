"""Wire a config into a simulation: data → model → algorithm → Simulator → results folder."""

from __future__ import annotations

from pathlib import Path

import torch

from pfedkit.algorithms.registry import build_algorithm
from pfedkit.algorithms.toolkit.frozen_features import feature_client
from pfedkit.core.config import RunConfig, to_dict
from pfedkit.core.errors import ConfigError
from pfedkit.core.seeding import built_with_seed, derive_seed
from pfedkit.data.client_data import ClientData
from pfedkit.data.setup import FederatedData, build_federated_data
from pfedkit.engines.callbacks import Callback, Checkpointer
from pfedkit.engines.progress import ProgressBar
from pfedkit.engines.simulate import SimulationResult, SimulationSettings, Simulator, resolve_device
from pfedkit.models import build_model
from pfedkit.models.prompted import PromptedClassifier, linear_probe_model
from pfedkit.models.split import SplitModel
from pfedkit.runs import results


def seeded_model(cfg: RunConfig, input_shape: tuple[int, int, int], num_classes: int) -> SplitModel:
    """The configured model with weights drawn from a generator seeded by ``cfg.seed`` only,
    so every algorithm of a comparison starts from the same weights (global RNG untouched)."""
    m = cfg.model
    return built_with_seed(derive_seed(cfg.seed, 0xD0DE),
                           lambda: build_model(m.name, input_shape, num_classes, m.options_for(m.name)))


def on_frozen_features(model: PromptedClassifier, clients: list[ClientData], device: torch.device
                       ) -> tuple[SplitModel, list[ClientData]]:
    """An unprompted frozen backbone needs no image at training time: every client's images go
    through it once (cached on the client data, `frozen_features`) and the method runs on the
    (n, D) features with an identity body and the model's (seeded) head."""
    model.to(device)
    views = [feature_client(model, c) for c in clients]
    probe = linear_probe_model(model.feature_dim, model.num_classes)
    probe.head.load_state_dict(model.head.state_dict())
    return probe, views


def simulate_config(cfg: RunConfig, fed: FederatedData | None = None, out_dir: Path | None = None,
                    resume: bool = False, progress: bool = True) -> SimulationResult:
    """Run ``cfg.algorithm`` on the configured data (or the given ``fed``), writing results to
    ``out_dir`` when given (config, metrics.jsonl, summary.json, curve.png, checkpoint.pt).
    With ``engine=flower-sim`` the run goes through Flower's Ray simulation instead
    (`pfedkit.runs.flower_app.simulate_with_flower`; same results folder, no checkpoints)."""
    if cfg.engine == "flower-sim":
        if resume or cfg.checkpoint_every or fed is not None:
            raise ConfigError("engine=flower-sim runs one algorithm per `pfedkit run`, each client's data and "
                              "personal state on its own node: compare, --resume and checkpoint_every need "
                              "engine=simulate")
        from pfedkit.runs.flower_app import simulate_with_flower

        return simulate_with_flower(cfg, out_dir, progress)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    fed = fed or build_federated_data(cfg.data, cfg.partition, cfg.seed)
    model = seeded_model(cfg, fed.input_shape, fed.num_classes)
    clients = fed.clients
    if isinstance(model, PromptedClassifier) and model.body.num_prompts == 0:
        model, clients = on_frozen_features(model, clients, resolve_device(cfg.device))
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
    result = Simulator(algo, clients, settings, callbacks).run(resume_from)
    if out_dir is not None:
        results.write_json(out_dir / "summary.json", {"algorithm": cfg.algorithm, "seed": cfg.seed,
                                                      "partition_hash": fed.partition.hash, **result.summary})
        results.plot_curves({cfg.algorithm: [result.history]}, out_dir / "curve.png", f"{cfg.algorithm} on {cfg.data.dataset}")
    return result
