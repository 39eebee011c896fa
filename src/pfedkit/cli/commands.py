"""Implementations of the CLI sub-commands (argument parsing lives in ``main``)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

from pfedkit.algorithms.registry import (
    algorithm_class,
    algorithm_names,
    algorithms_for_model,
    check_model_support,
    check_privacy_support,
)
from pfedkit.core.config import RunConfig, load_config
from pfedkit.core.errors import ConfigError
from pfedkit.data.setup import load_pool, partition_pool
from pfedkit.runs.compare import run_variants, write_comparison
from pfedkit.runs.experiment import check_inputs, simulate_config
from pfedkit.runs.results import OutputFolder, check_output_dir, prepare_output_dir
from pfedkit.runs.tuning import tune_learning_rates, with_lr


def load_validated(args: argparse.Namespace) -> RunConfig:
    """Config + overrides, validated (hyper-parameter sections included) and the algorithm known."""
    cfg = load_config(args.config, args.overrides)
    check_model_support(cfg.algorithm, cfg.model.name, cfg.model.options_for(cfg.model.name))
    check_privacy_support(cfg.algorithm, cfg.privacy)
    return cfg


def cmd_run(args: argparse.Namespace) -> int:
    cfg = load_validated(args)
    out = Path(cfg.output)
    res = simulate_config(cfg, out_dir=out, resume=args.resume, progress=not args.quiet, overwrite=args.overwrite)
    sel, last = res.summary["selected"]["test"], res.summary["last"]["test"]
    spent = res.summary.get("privacy")
    private = f"; privacy: epsilon {spent['epsilon']:.2f} spent (delta {spent['delta']:g})" if spent else ""
    print(f"{cfg.algorithm}: test accuracy {100 * sel['mean']:.2f} % at val-selected round "
          f"{res.summary['selected_round']} (last round {100 * last['mean']:.2f} %){private}; results in {out}")
    return 0


def cmd_compare(args: argparse.Namespace, command: str) -> int:
    cfg = load_validated(args)
    model_options = cfg.model.options_for(cfg.model.name)
    if args.algos == "all":
        algos = algorithms_for_model(cfg.model.name, model_options)
        if cfg.privacy.enabled:  # only the methods that can run privately
            algos = [a for a in algos if algorithm_class(a).supports_privacy]
    else:
        algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    for a in algos:
        check_model_support(a, cfg.model.name, model_options)
        check_privacy_support(a, cfg.privacy)
    if args.seeds < 1:
        raise ConfigError(f"--seeds={args.seeds} is out of range; allowed [1, inf]")
    if args.workers < 1:
        raise ConfigError(f"--workers={args.workers} is out of range; allowed [1, inf]")
    lrs = parse_lrs(args.tune_lr)
    folder = OutputFolder(Path(cfg.output), args.overwrite)  # checks the folder, touches nothing yet
    check_inputs(cfg, list(range(args.seeds)))
    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    variants = {a: dataclasses.replace(cfg, algorithm=a) for a in algos}
    if lrs:
        chosen = tune_learning_rates(variants, lrs, log=log, workers=args.workers)
        variants = {a: with_lr(c, chosen[a]) for a, c in variants.items()}
    with folder as out:
        runs = run_variants(variants, list(range(args.seeds)), out, progress=not args.quiet, log=log,
                            workers=args.workers)
        title = (f"{cfg.data.dataset}, {cfg.data.num_clients} clients, {describe_partition(cfg)}, "
                 f"{cfg.train.rounds} rounds")
        print(write_comparison(runs, out, title, command))
    print(f"\nwritten: {out / 'table.md'}, {out / 'curves.png'}", file=sys.stderr)
    return 0


def cmd_partition(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    png = partition_plot_path(cfg, args.out, args.overwrite) if args.plot else None
    pool = load_pool(cfg.data, cfg.seed)
    part = partition_pool(pool, cfg.data, cfg.partition, cfg.seed)
    labels = pool.y.numpy()
    counts = part.label_counts(labels, pool.num_classes)
    print(f"{pool.name}: {len(pool)} samples, {pool.num_classes} classes -> {part.num_clients} clients "
          f"({describe_partition(cfg)}); hash {part.hash}")
    print("client  size  classes  label histogram")
    for k, row in enumerate(counts):
        extra = part.client_meta[k] if part.client_meta else {}
        print(f"{k:>6} {row.sum():>5} {int((row > 0).sum()):>8}  {' '.join(map(str, row))}"
              + (f"  {extra}" if extra else ""))
    sizes = counts.sum(1)
    print(f"sizes: min {sizes.min()}, median {int(np.median(sizes))}, max {sizes.max()}")
    if png is not None:
        from pfedkit.data.pictures import plot_partition

        path = png
        taken = [p for p in scenario_grid_paths(pool, cfg, path.parent) if p.exists()]
        if taken and not args.overwrite:
            raise ConfigError(f"{taken[0]} exists; pass --overwrite to replace it or --out PATH in another folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        plot_partition(part, labels, pool.num_classes, path,
                       domains=None if pool.domain is None else pool.domain.numpy(), domain_names=pool.domain_names)
        print(f"plot: {path}")
        for grid in save_scenario_grids(pool, cfg, path.parent):
            print(f"samples: {grid}")
    return 0


def partition_plot_path(cfg: RunConfig, out: str, overwrite: bool) -> Path:
    """Where ``partition --plot`` writes its PNG: ``out``, else ``<output>/partition.png``.

    Checked before any work, unless ``overwrite``: an existing ``out`` file, or (without ``out``)
    an output folder that already holds files, e.g. a run's results, is refused.
    """
    if out:
        path = Path(out)
        if path.is_dir() or path.suffix.lower() != ".png":
            raise ConfigError(f"--out={out!r} must be a file path ending in .png")
        if path.exists() and not overwrite:
            raise ConfigError(f"--out={out!r} exists; pass --overwrite to replace it or choose another path")
        return path
    folder = Path(cfg.output)
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise ConfigError(f"output folder {str(folder)!r} already has files; pass --out PATH.png, set output=... "
                          f"or pass --overwrite")
    return folder / "partition.png"


DOMAIN_GRID, CORRUPTION_GRID = "samples_domains.png", "samples_corruptions.png"


def scenario_grid_paths(pool, cfg: RunConfig, folder: Path) -> list[Path]:
    """The sample-grid PNGs `save_scenario_grids` writes into ``folder`` for this pool and config."""
    paths = []
    if pool.domain is not None and pool.domain_names:
        paths.append(folder / DOMAIN_GRID)
    if cfg.partition.corruption != "none":
        paths.append(folder / CORRUPTION_GRID)
    return paths


def parse_lrs(text: str) -> list[float]:
    if not text:
        return []
    try:
        lrs = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--tune-lr={text!r} must be comma-separated numbers") from None
    if not all(0 < lr < float("inf") for lr in lrs):  # NaN fails every comparison
        raise ConfigError(f"--tune-lr={text!r}: every learning rate must be a finite number > 0")
    return lrs


def describe_partition(cfg: RunConfig) -> str:
    p = cfg.partition
    detail = {"dirichlet": f"Dirichlet alpha={p.alpha}", "pathological": f"{p.classes_per_client} classes/client",
              "shards": f"{p.shards_per_client} shards/client", "quantity": f"log-normal sizes sigma={p.quantity_sigma}",
              "domain": "one domain per client",
              "domain-dirichlet": f"alpha={p.alpha}, alpha_domain={p.alpha_domain}"}.get(p.scheme, p.scheme)
    if p.corruption != "none":
        detail += f", corruption={p.corruption} severity={p.severity or 'random'}"
    return detail


def cmd_bench(args: argparse.Namespace, command: str) -> int:
    import importlib

    from pfedkit.runs.bench import BENCHMARKS
    from pfedkit.runs.bench.suite import BenchOptions

    if args.name not in BENCHMARKS:
        raise ConfigError(f"unknown benchmark {args.name!r}; choose one of {', '.join(sorted(BENCHMARKS))}")
    if args.seeds < 1:
        raise ConfigError(f"--seeds={args.seeds} is out of range; allowed [1, inf]")
    if args.workers < 1:
        raise ConfigError(f"--workers={args.workers} is out of range; allowed [1, inf]")
    split = lambda text: tuple(v.strip() for v in text.split(",") if v.strip())  # noqa: E731
    for a in split(args.algos):
        algorithm_class(a)
    opts = BenchOptions(scale=args.scale, seeds=args.seeds, out=Path(args.out), settings=split(args.settings),
                        algos=split(args.algos), quiet=not args.progress, command=command, workers=args.workers,
                        overwrite=args.overwrite, tune_lr=tuple(parse_lrs(args.tune_lr)))
    return importlib.import_module(BENCHMARKS[args.name]).run(opts)


def save_scenario_grids(pool, cfg: RunConfig, folder: Path) -> list[Path]:
    """Sample-grid PNGs of the scenario: one row per domain (multi-domain pools) and corruption
    type x severity (when the config assigns corruptions)."""
    import torch

    from pfedkit.data.pictures import save_corruption_grid, save_domain_grid

    written = []
    if pool.domain is not None and pool.domain_names:
        written.append(save_domain_grid(pool, folder / DOMAIN_GRID, seed=cfg.seed))
    if cfg.partition.corruption != "none":
        from pfedkit.data.corruptions import CORRUPTIONS

        names = CORRUPTIONS if cfg.partition.corruption == "random" else (cfg.partition.corruption,)
        pick = torch.as_tensor(np.random.default_rng(cfg.seed).choice(len(pool), 4, replace=False))
        written.append(save_corruption_grid(pool.x[pick], folder / CORRUPTION_GRID,
                                            torch.Generator().manual_seed(cfg.seed), corruptions=names))
    return written


def cmd_list(args: argparse.Namespace) -> int:
    """Print what exists: algorithms (what each shares and keeps), datasets (whether their files
    are under the data root), partition schemes and models (with their options)."""
    import dataclasses

    from pfedkit.core.config import choices_of, default_data_root, sections_of
    from pfedkit.core.errors import DatasetNotFoundError
    from pfedkit.data.registry import load_source, source_names

    what = args.what
    if what in ("all", "algorithms"):
        print("algorithms (algorithm=NAME; hyper-parameters hp.NAME.*):")
        for name in algorithm_names():
            cls = algorithm_class(name)
            fields = ", ".join(f.name for f in dataclasses.fields(cls.HParams)) or "-"
            print(f"  {name:<11} shares: {cls.shares}\n  {'':<11} keeps:  {cls.keeps}\n  {'':<11} hp:     {fields}")
    if what in ("all", "datasets"):
        root = Path(args.root or default_data_root()).expanduser()
        print(f"datasets (data.dataset=NAME; files under {root}):")
        for name in source_names():
            try:
                pool = load_source(name, root)
                status = f"present: {len(pool)} images, {pool.num_classes} classes"
            except DatasetNotFoundError as err:
                status = f"missing ({str(err).split(';')[0]})"
            print(f"  {name:<14} {status}")
    if what in ("all", "partitions"):
        print("partition schemes (partition.scheme=NAME): " + ", ".join(choices_of("partition.scheme")))
    if what in ("all", "models"):
        print("models (model.name=NAME; options model.NAME.*):")
        for name, options in sections_of("model").items():
            fields = ", ".join(f"{f.name}={f.default}" for f in dataclasses.fields(options))
            print(f"  {name:<11} {fields}")
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    """Pretrain (or reuse) the offline backbone for the config's data; print its path and the
    frozen-feature linear-probe accuracy on the target (pretrained and random-init)."""
    import os
    import shutil
    import time

    import torch

    from pfedkit.runs import pretrain as pt

    cfg = load_config(args.config, args.overrides if args.config else [*pt.DEFAULT_TARGET, *args.overrides])
    out = Path(args.out).expanduser() if args.out else None
    if out is not None and (out.suffix != ".safetensors" or out.is_dir()):
        raise ConfigError(f"--out={args.out!r} must be a file path ending in .safetensors")
    if args.threads < 0:
        raise ConfigError(f"--threads={args.threads} is out of range; allowed [0, inf]")
    options = pt.PretrainOptions.for_scale(args.scale, source=args.source or None, preset=args.preset or None,
                                           epochs=args.epochs, samples=args.samples, seed=args.seed,
                                           device=cfg.device, data_root=cfg.data.root, target=cfg.data)
    pt.check_options(options)
    if args.threads:
        torch.set_num_threads(args.threads)
    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    if args.scale == "gpu" and cfg.device == "cpu":
        log("pretrain: --scale gpu with device=cpu; add device=cuda (or device=auto) to train on a GPU")
    path = pt.pretrain_backbone(options, log)
    print(f"checkpoint: {path}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        shutil.copyfile(path, tmp)
        os.replace(tmp, out)
        print(f"copied to: {out}")
    if not args.no_probe:
        start = time.perf_counter()
        probe = pt.linear_probe(path, cfg, cfg.device)
        floor = pt.linear_probe(pt.random_backbone(options.preset, options.seed), cfg, cfg.device)
        print(f"linear probe on {cfg.data.dataset} ({cfg.data.num_clients} clients, {describe_partition(cfg)}; "
              f"{probe.num_train} train / {probe.num_test} test images pooled): "
              f"pretrained {100 * probe.test_accuracy:.2f} % (C={probe.C:g}), "
              f"random init {100 * floor.test_accuracy:.2f} % (C={floor.C:g}) "
              f"[{time.perf_counter() - start:.0f} s]")
    print(f"use it: model.vit.checkpoint={out or path}")
    return 0


def cmd_flower_app(args: argparse.Namespace) -> int:
    """Write a Flower app folder for the config (docs/deploy.md) and say how to launch it."""
    cfg = load_validated(args)
    try:
        from pfedkit.runs.flower_app import write_app
    except ImportError as err:
        raise ConfigError(f"the Flower engine needs Flower: pip install 'pfedkit[flower]' ({err})") from None
    check_output_dir(Path(cfg.output), args.overwrite, resume=False)  # touches nothing
    app = write_app(cfg, Path(args.app))  # validates the config; old results stay until it has worked
    out = prepare_output_dir(Path(cfg.output), args.overwrite, resume=False)
    print(f"Flower app for {cfg.algorithm} ({cfg.data.num_clients} clients, {cfg.train.rounds} rounds) in {app}; "
          f"the ServerApp writes results to {out.resolve()}")
    print(f"next: one SuperNode per client with --node-config 'partition-id=K' (K = 0..{cfg.data.num_clients - 1}), "
          f"then: flwr run {app} CONNECTION --stream   (docs/deploy.md)")
    return 0
