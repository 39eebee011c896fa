"""Wire a config into a simulation: data → model → algorithm → Simulator → results folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pfedkit.algorithms.registry import build_algorithm
from pfedkit.algorithms.toolkit.frozen_features import feature_client
from pfedkit.core.config import RunConfig, to_dict
from pfedkit.core.errors import ConfigError
from pfedkit.core.seeding import built_with_seed, derive_seed
from pfedkit.data.client_data import ClientData
from pfedkit.data.setup import FederatedData, build_federated_data, load_pool, partition_pool
from pfedkit.engines.callbacks import Callback, Checkpointer, EngineState
from pfedkit.engines.progress import ProgressBar
from pfedkit.engines.simulate import SimulationResult, SimulationSettings, Simulator, resolve_device
from pfedkit.models import build_model
from pfedkit.models.prompted import PromptedClassifier, linear_probe_model
from pfedkit.models.split import SplitModel
from pfedkit.runs import results
from pfedkit.runs.resume import check_resumable, fingerprint


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


DEVICES = "use cpu, cuda, cuda:N, mps or auto"


def check_device(name: str) -> torch.device:
    """The device ``device=name`` means, checked to exist in this torch build and on this
    machine; ConfigError (one line naming the fix) otherwise."""
    if name == "auto":
        return resolve_device(name)
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"device {name!r} is not a torch device; {DEVICES}") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device {name!r} is not supported by pfedkit; {DEVICES}")
    if dev.type == "cuda":
        if not torch.backends.cuda.is_built():
            raise ConfigError(f"device {name!r}: CUDA is not available in this torch build (CPU only); "
                              "use device=cpu or device=auto")
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r}: this machine has no usable CUDA GPU; use device=cpu or device=auto")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ConfigError(f"device {name!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}; "
                              "use one of them or device=auto")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r}: MPS is not available on this machine; use device=cpu or device=auto")
    return dev


def check_inputs(cfg: RunConfig, seeds: list[int]) -> None:
    """Validate what runs of ``cfg`` over ``seeds`` read, before any results folder is touched:
    the device, the data files and every seed's partition (one-line PfedkitError otherwise).
    Per-client splits are not built here; a failure there restores the folder (`OutputFolder`)."""
    check_device(cfg.device)
    pool = load_pool(cfg.data, cfg.seed)
    for seed in seeds:
        partition_pool(pool, cfg.data, cfg.partition, seed)


def simulate_config(cfg: RunConfig, fed: FederatedData | None = None, out_dir: Path | None = None,
                    resume: bool = False, progress: bool = True, overwrite: bool = False) -> SimulationResult:
    """Run ``cfg.algorithm`` on the configured data (or the given ``fed``), writing results to
    ``out_dir`` when given (config, metrics.jsonl, summary.json, curve.png, checkpoint.pt).

    Everything is validated before ``out_dir`` is touched: the device, the data and partition,
    the model and algorithm, and with ``resume`` the checkpoint (its checksum, and that the config
    and partition match it: `pfedkit.runs.resume`). ``overwrite`` replaces a folder with results
    only once the new run has written its first round (`results.OutputFolder`).
    With ``engine=flower-sim`` the run goes through Flower's Ray simulation instead
    (`pfedkit.runs.flower_app.simulate_with_flower`; same results folder, no checkpoints)."""
    if out_dir is not None:
        results.check_output_dir(out_dir, overwrite, resume)
    elif resume:
        raise ValueError("simulate_config: resume needs the out_dir holding checkpoint.pt")
    device = check_device(cfg.device)
    if cfg.engine == "flower-sim":
        if resume or cfg.checkpoint_every or fed is not None:
            raise ConfigError("engine=flower-sim runs one algorithm per `pfedkit run`, each client's data and "
                              "personal state on its own node: compare, --resume and checkpoint_every need "
                              "engine=simulate")
        from pfedkit.runs.flower_app import simulate_with_flower

        if out_dir is None:
            return simulate_with_flower(cfg, None, progress)
        with results.OutputFolder(out_dir, overwrite) as out:
            return simulate_with_flower(cfg, out, progress)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    fed = fed or build_federated_data(cfg.data, cfg.partition, cfg.seed)
    model = seeded_model(cfg, fed.input_shape, fed.num_classes)
    clients = fed.clients
    if isinstance(model, PromptedClassifier) and model.body.num_prompts == 0:
        model, clients = on_frozen_features(model, clients, device)
    algo = build_algorithm(cfg.algorithm, model, cfg.hparams(), cfg.train, fed.num_classes,
                           cfg.seed, privacy=cfg.privacy)
    settings = SimulationSettings(cfg.seed, cfg.train.rounds, cfg.train.client_fraction, cfg.eval_every, cfg.device,
                                  cfg.simulate.batched, cfg.simulate.batch_clients)
    callbacks: list[Callback] = [ProgressBar(enabled=progress)]
    if out_dir is None:
        return Simulator(algo, clients, settings, callbacks).run()
    ckpt = out_dir / "checkpoint.pt"
    meta = fingerprint(cfg, fed.partition.hash, device.type)
    resume_from = resumable_state(ckpt, meta, cfg.eval_every) if resume else None
    simulator = Simulator(algo, clients, settings, callbacks)
    folder = results.OutputFolder(out_dir, overwrite, resume)
    with folder as out:
        results.write_config(out, {**to_dict(cfg), "partition_hash": fed.partition.hash})
        simulator.callbacks += [results.MetricsWriter(out, resume_from.history if resume_from else None),
                                folder.commit_callback()]
        if cfg.checkpoint_every:
            simulator.callbacks.append(Checkpointer(ckpt, cfg.checkpoint_every, {"fingerprint": meta}))
        result = simulator.run(resume_from)
        results.write_json(out / "summary.json", {"algorithm": cfg.algorithm, "seed": cfg.seed,
                                                  "partition_hash": fed.partition.hash, **result.summary})
        results.plot_curves({cfg.algorithm: [result.history]}, out / "curve.png",
                            f"{cfg.algorithm} on {cfg.data.dataset}")
    return result


def resumable_state(ckpt: Path, fingerprint_now: dict[str, Any], eval_every: int) -> EngineState:
    """The verified state of checkpoint ``ckpt``, after checking that a run with
    ``fingerprint_now`` continues it to an uninterrupted run's result (ConfigError otherwise)."""
    if not ckpt.exists():
        raise ConfigError(f"--resume: no checkpoint.pt in {str(ckpt.parent)!r} (set checkpoint_every=N when running)")
    state, meta = Checkpointer.read(ckpt)
    check_resumable(meta.get("fingerprint", {}), fingerprint_now, state, eval_every, str(ckpt))
    return state
