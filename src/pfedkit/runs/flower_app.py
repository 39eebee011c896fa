"""A pfedkit config as a Flower app: the ServerApp and ClientApp, Ray simulation, the app folder.

The same resolved config drives every runtime. It travels as JSON in the Flower run config
(`CONFIG_KEY`); each node adds only what is its own through its node config: ``partition-id``
(which client it is; Flower's simulation sets it) and, optionally, ``data-root`` (where that site
keeps the dataset). From these a node builds its one client (`client_side`) and the server its
algorithm; the server loop (`pfedkit.engines.flower.server.FlowerServer`) writes the results
folder the simulator writes: config.yaml, metrics.jsonl, summary.json, curve.png.

- ``pfedkit run CONFIG engine=flower-sim`` → `simulate_with_flower` (Flower's Ray simulation).
- ``pfedkit flower app CONFIG --app DIR`` → `write_app` (a folder ``flwr run`` submits to a
  SuperLink; `client_app` and `server_app` below are its components).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path
from typing import Any

import torch
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from pfedkit.algorithms.protocol import Algorithm
from pfedkit.algorithms.registry import build_algorithm
from pfedkit.core.config import RunConfig, build_dataclass, to_dict
from pfedkit.core.errors import ConfigError
from pfedkit.data.federated import build_client
from pfedkit.data.setup import load_pool, partition_pool
from pfedkit.engines.callbacks import Callback
from pfedkit.engines.flower.client import ClientSide, make_client_app
from pfedkit.engines.flower.server import Federation, FlowerServer, FlowerSettings
from pfedkit.engines.progress import ProgressBar
from pfedkit.engines.simulate import SimulationResult, resolve_device
from pfedkit.models.prompted import PromptedClassifier
from pfedkit.runs import results
from pfedkit.runs.experiment import on_frozen_features, seeded_model

CONFIG_KEY = "pfedkit-config"
"""Run-config key holding the resolved pfedkit config as JSON."""
PARTITION_KEY = "partition-id"
"""Node-config key: the client a node serves (Flower's own name; its simulation sets it)."""
DATA_ROOT_KEY = "data-root"
"""Node-config key (optional): the site's data root, instead of the config's ``data.root``."""

# ----- config <-> Flower run config ----------------------------------------------------------------
def run_config_of(cfg: RunConfig) -> dict[str, str]:
    """The Flower run config that carries ``cfg``."""
    return {CONFIG_KEY: json.dumps(to_dict(cfg), sort_keys=True)}


def config_of(run_config: dict[str, Any]) -> RunConfig:
    """The pfedkit config a Flower run config carries (validated as `load_config` validates)."""
    if CONFIG_KEY not in run_config:
        raise ConfigError(f"the Flower run config has no {CONFIG_KEY!r}; make the app with `pfedkit flower app`")
    return build_dataclass(RunConfig, json.loads(str(run_config[CONFIG_KEY])))


# ----- the client side -------------------------------------------------------------------------------
def client_side(context: Context, cfg: RunConfig | None = None) -> ClientSide:
    """The node's client, built from its node config and the run's config (cached per process)."""
    text = json.dumps(to_dict(cfg), sort_keys=True) if cfg is not None else str(context.run_config.get(CONFIG_KEY, ""))
    if not text:
        raise ConfigError(f"the Flower run config has no {CONFIG_KEY!r}; make the app with `pfedkit flower app`")
    nc = context.node_config
    if PARTITION_KEY not in nc:
        raise ConfigError(f"node {context.node_id} has no {PARTITION_KEY!r} in its node config; start the SuperNode "
                          f"with --node-config '{PARTITION_KEY}=K'")
    return _cached_side(text, int(nc[PARTITION_KEY]), str(nc.get(DATA_ROOT_KEY, "")))  # type: ignore[arg-type]


@functools.lru_cache(maxsize=256)
def _cached_side(config_json: str, client_id: int, data_root: str) -> ClientSide:
    return build_client_side(build_dataclass(RunConfig, json.loads(config_json)), client_id, data_root)


def build_client_side(cfg: RunConfig, client_id: int, data_root: str = "") -> ClientSide:
    """Client ``client_id``'s data (alone) and an algorithm around the config's seeded model."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data_cfg = dataclasses.replace(cfg.data, root=data_root) if data_root else cfg.data
    if not 0 <= client_id < data_cfg.num_clients:
        raise ConfigError(f"{PARTITION_KEY}={client_id} does not exist; data.num_clients={data_cfg.num_clients}")
    pool = load_pool(data_cfg, cfg.seed)
    partition = partition_pool(pool, data_cfg, cfg.partition, cfg.seed)
    data = build_client(pool, partition, client_id, data_cfg.val_fraction, data_cfg.test_fraction, cfg.seed)
    device = resolve_device(cfg.device)
    model = seeded_model(cfg, pool.input_shape, pool.num_classes)
    if isinstance(model, PromptedClassifier) and model.body.num_prompts == 0:
        model, (data,) = on_frozen_features(model, [data], device)
    data.to(device)
    model.to(device)
    algo = build_algorithm(cfg.algorithm, model, cfg.hparams(), cfg.train, pool.num_classes, cfg.seed,
                           privacy=cfg.privacy)
    initial = {k: v.detach().clone() for k, v in algo.model.state_dict().items()}
    return ClientSide(algo, data, cfg.seed, device, partition.hash, initial)


# ----- the server side -------------------------------------------------------------------------------
def server_algorithm(cfg: RunConfig, fed: Federation) -> Algorithm:
    """The server's algorithm around the same seeded model the nodes build (no data needed)."""
    model = seeded_model(cfg, fed.input_shape, fed.num_classes)
    if isinstance(model, PromptedClassifier) and model.body.num_prompts == 0:
        model, _ = on_frozen_features(model, [], resolve_device(cfg.device))
    model.to(resolve_device(cfg.device))
    return build_algorithm(cfg.algorithm, model, cfg.hparams(), cfg.train, fed.num_classes, cfg.seed,
                           privacy=cfg.privacy)


class _WriteConfig(Callback):
    """Writes config.yaml once the nodes have told the server the partition hash."""

    def __init__(self, cfg: RunConfig, out: Path, server: FlowerServer, runtime: str) -> None:
        self.cfg, self.out, self.server, self.runtime = cfg, out, server, runtime

    def on_run_start(self, algorithm: str, total_rounds: int, start_round: int) -> None:
        fed = self.server.federation
        assert fed is not None
        results.write_config(self.out, {**to_dict(self.cfg), "partition_hash": fed.partition_hash,
                                        "flower_runtime": self.runtime})


def serve(grid: Grid, cfg: RunConfig, out_dir: Path | None, runtime: str, progress: bool = True) -> SimulationResult:
    """Run ``cfg`` from the server side of a Flower run; write the results folder to ``out_dir``."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    settings = FlowerSettings(cfg.seed, cfg.train.rounds, cfg.train.client_fraction, cfg.eval_every, cfg.device,
                              num_clients=cfg.data.num_clients, connect_timeout=cfg.flower.connect_timeout,
                              round_timeout=cfg.flower.round_timeout)
    server = FlowerServer(grid, settings, functools.partial(server_algorithm, cfg), [ProgressBar(enabled=progress)])
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        server.callbacks += [_WriteConfig(cfg, out_dir, server, runtime), results.MetricsWriter(out_dir)]
    result = server.run()
    if out_dir is not None:
        fed = server.federation
        assert fed is not None
        results.write_json(out_dir / "summary.json", {"algorithm": cfg.algorithm, "seed": cfg.seed,
                                                      "partition_hash": fed.partition_hash, **result.summary})
        results.plot_curves({cfg.algorithm: [result.history]}, out_dir / "curve.png",
                            f"{cfg.algorithm} on {cfg.data.dataset} (Flower)")
    return result


# ----- deployment components (referenced by the app folder's pyproject.toml) -------------------------
client_app = make_client_app(client_side)
"""The ClientApp of a deployment: config from the run config, client from the node config."""

server_app = ServerApp()


@server_app.main()
def _deployed_main(grid: Grid, context: Context) -> None:
    cfg = config_of(context.run_config)
    serve(grid, cfg, Path(cfg.output), runtime="deployment", progress=True)


# ----- Ray simulation --------------------------------------------------------------------------------
def simulate_with_flower(cfg: RunConfig, out_dir: Path | None = None, progress: bool = True) -> SimulationResult:
    """Run ``cfg`` in Flower's simulation runtime (Ray): one virtual SuperNode per client."""
    try:
        from flwr.simulation import run_simulation
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ConfigError(f"engine=flower-sim needs Flower with Ray: pip install 'pfedkit[flower]' ({err})") from None
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    outcome: dict[str, SimulationResult] = {}
    app = ServerApp()

    @app.main()
    def _main(grid: Grid, context: Context) -> None:
        outcome["result"] = serve(grid, cfg, out_dir, runtime="simulation", progress=progress)

    init_args: dict[str, Any] = {"include_dashboard": False}
    if cfg.flower.ray_cpus:
        init_args["num_cpus"] = cfg.flower.ray_cpus
    backend = {"client_resources": {"num_cpus": cfg.flower.client_cpus, "num_gpus": 0.0}, "init_args": init_args}
    run_simulation(server_app=app, client_app=make_client_app(functools.partial(client_side, cfg=cfg)),
                   num_supernodes=cfg.data.num_clients, backend_config=backend)  # type: ignore[arg-type]
    if "result" not in outcome:
        raise ConfigError("the Flower simulation ended without a result; see Flower's log above")
    return outcome["result"]


# ----- the app folder ---------------------------------------------------------------------------------
def write_app(cfg: RunConfig, app_dir: Path, name: str = "pfedkit-run") -> Path:
    """Write an app folder (``pyproject.toml``) that ``flwr run APP_DIR CONNECTION`` submits.

    The config is embedded resolved, with ``output`` made absolute: the ServerApp (on the
    SuperLink's machine) writes the results folder there.
    """
    import tomli_w

    cfg = dataclasses.replace(cfg, output=str(Path(cfg.output).expanduser().resolve()))
    app_dir.mkdir(parents=True, exist_ok=True)
    project = {
        "build-system": {"requires": ["hatchling"], "build-backend": "hatchling.build"},
        "project": {"name": name, "version": "1.0.0", "description": f"pfedkit {cfg.algorithm} run",
                    "license": "Apache-2.0", "dependencies": ["pfedkit[flower]"]},
        "tool": {"flwr": {"app": {
            "publisher": "pfedkit",
            "components": {"serverapp": "pfedkit.runs.flower_app:server_app",
                           "clientapp": "pfedkit.runs.flower_app:client_app"},
            "config": run_config_of(cfg),
        }}},
    }
    (app_dir / "pyproject.toml").write_text(tomli_w.dumps(project))
    return app_dir
