"""``pfedkit`` command line: list | run | compare | partition | bench | pretrain | flower.

Every user error (bad config key or value, missing data, infeasible partition, existing results
folder) prints one line ``pfedkit: error: ...`` and exits with code 2, before any work starts.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from pfedkit.core.errors import PfedkitError

EXAMPLES = """examples:
  pfedkit list                      # algorithms, datasets (present or not), partition schemes, models
  pfedkit run configs/demo.yaml algorithm=fedavg train.rounds=5
  pfedkit compare configs/demo.yaml --algos local,fedavg,fedavg_ft --seeds 3
  pfedkit partition configs/demo.yaml partition.alpha=0.1 partition.min_size=10 --plot --out results/partition_alpha0.1.png
  pfedkit pretrain configs/bpt_digits_md.yaml --scale cpu   # offline ViT backbone, cached
  pfedkit run configs/demo.yaml engine=flower-sim            # the same run in Flower's Ray simulation
  pfedkit flower app configs/demo.yaml algorithm=pfedgm --app flower-app   # deploy: docs/deploy.md
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pfedkit", description="Personalized federated learning toolkit.",
                                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    see_list = " `pfedkit list` shows the algorithms, datasets, partition schemes and models."

    lst = sub.add_parser("list", help="show what exists: algorithms, datasets, partition schemes, models",
                         description="List the registered algorithms (what each shares and keeps, its "
                                     "hyper-parameters), datasets (whether their files are present), "
                                     "partition schemes and models (their options).")
    lst.add_argument("what", nargs="?", default="all", choices=("all", "algorithms", "datasets", "partitions", "models"))
    lst.add_argument("--root", default="", help="data root to look in (default $PFEDKIT_DATA or ~/.cache/pfedkit/data)")

    run = sub.add_parser("run", help="run one algorithm as a config describes",
                         description="Run one algorithm. Overrides are dotted keys, e.g. train.rounds=5 hp.fedprox.mu=0.1." + see_list)
    add_config_arguments(run, results=True)
    run.add_argument("--resume", action="store_true",
                     help="continue from the folder's checkpoint.pt (refused, naming the keys, if the config "
                          "differs in anything that changes the result)")

    cmp_ = sub.add_parser("compare", help="compare algorithms on identical partitions over seeds",
                          description="Run each algorithm on each seed (same partition and initial weights "
                                      "for every algorithm at a seed); print a markdown table; write table.md, "
                                      "summary.json and curves.png to the output folder." + see_list)
    add_config_arguments(cmp_, results=True)
    cmp_.add_argument("--algos", required=True, help="comma-separated algorithm names, or 'all'")
    cmp_.add_argument("--seeds", type=int, default=3, help="number of seeds 0..N-1 (default 3)")
    cmp_.add_argument("--tune-lr", default="", metavar="LR,LR,...",
                      help="per algorithm, pick train.lr from these values by validation accuracy on "
                           "tuning seed 1000 (same budget for every algorithm; the search runs in --workers processes)")
    cmp_.add_argument("--workers", type=int, default=1,
                      help="processes running (seed, algorithm) pairs in parallel (default 1; results identical)")

    part = sub.add_parser("partition", help="show (and plot) how a config partitions the data",
                          description="Print per-client sizes, classes and the partition hash; --plot writes "
                                      "per-client label (and domain) histograms." + see_list)
    add_config_arguments(part, results=False)
    part.add_argument("--plot", action="store_true", help="write a PNG of per-client histograms")
    part.add_argument("--out", default="", help="PNG path (default <output>/partition.png; sample grids go beside it)")
    part.add_argument("--overwrite", action="store_true",
                      help="write even where files exist (refused otherwise: an existing --out file or sample grid, "
                           "or a non-empty <output> folder when --out is not given)")
    bench = sub.add_parser("bench", help="run a benchmark suite (tables + plots to docs/results/)",
                           description="Run a named benchmark: every setting x algorithm x seed, one markdown "
                                       "table and plot per setting under OUT/NAME/." + see_list)
    bench.add_argument("name", help="benchmark: " + ", ".join(bench_names()))
    bench.add_argument("--scale", choices=("cpu", "gpu"), default="cpu",
                       help="cpu: sized for about an hour on 2 cores (default); gpu: full data, more rounds")
    bench.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    bench.add_argument("--out", default="docs/results", help="output root (default docs/results)")
    bench.add_argument("--overwrite", action="store_true",
                       help="replace the selected settings' existing results under OUT/NAME/ (refused otherwise)")
    bench.add_argument("--settings", default="", help="comma-separated subset of the benchmark's settings")
    bench.add_argument("--algos", default="", help="comma-separated algorithms (default: the benchmark's list)")
    bench.add_argument("--progress", action="store_true", help="per-round progress output")
    bench.add_argument("--workers", type=int, default=1, help="processes running (seed, method) pairs in parallel")
    bench.add_argument("--tune-lr", default="", metavar="LR,LR,...",
                       help="per method, pick train.lr from these values by validation accuracy on tuning seed 1000 "
                            "(the search runs in --workers processes)")

    pre = sub.add_parser("pretrain", help="pretrain the offline ViT backbone on a source disjoint from the clients",
                         description="Train a ViT preset + linear head on a source dataset whose images are "
                                     "disjoint from the target's (the CONFIG's data; without CONFIG: digits-md, "
                                     "domain-dirichlet, 20 clients); cache the backbone under $PFEDKIT_CACHE/backbones "
                                     "(default ~/.cache/pfedkit/backbones) by recipe hash, reuse it when it exists; "
                                     "report the frozen-feature linear-probe accuracy on the target's pooled test "
                                     "splits, and that of a random backbone of the same preset. See docs/pretrain.md.")
    add_config_arguments(pre, results=False)
    pre.add_argument("--source", default="",
                     help="source(s) joined by '+': fashion-mnist, syndigits, or any dataset of `pfedkit list` "
                          "(default: the scale's; cpu: syndigits, gpu: fashion-mnist+syndigits)")
    pre.add_argument("--scale", choices=("cpu", "gpu"), default="cpu",
                     help="cpu: vit_cpu_tiny, 10k images, 8 epochs, about 5 min of training on 2 cores "
                          "(default); gpu: vit_cpu_small, 130k images, 40 epochs (set device=cuda)")
    pre.add_argument("--preset", default="", help="ViT preset instead of the scale's")
    pre.add_argument("--epochs", type=int, default=None, help="epochs instead of the scale's")
    pre.add_argument("--samples", type=int, default=None, help="source images in all instead of the scale's (0 = all)")
    pre.add_argument("--seed", type=int, default=0, help="pretraining seed (default 0)")
    pre.add_argument("--threads", type=int, default=0, help="torch CPU threads (default 0: torch's default)")
    pre.add_argument("--out", default="", help="also copy the checkpoint to this .safetensors path")
    pre.add_argument("--no-probe", action="store_true", help="skip the linear-probe report")

    flower = sub.add_parser("flower", help="run a config on Flower across machines (docs/deploy.md)",
                            description="Deploy a config on Flower: `pfedkit flower app` writes the app folder that "
                                        "`flwr run` submits to a SuperLink; every site runs `flower-supernode` "
                                        "with --node-config 'partition-id=K'. See docs/deploy.md.")
    flower_sub = flower.add_subparsers(dest="flower_command", required=True, metavar="SUBCOMMAND")
    app = flower_sub.add_parser("app", help="write the Flower app folder (pyproject.toml) of a config",
                                description="Resolve the config (with overrides) and write APP/pyproject.toml: "
                                            "pfedkit's ServerApp and ClientApp with the config embedded; results "
                                            "go to the config's output folder on the SuperLink's machine.")
    add_config_arguments(app, results=False)
    app.add_argument("--app", required=True, metavar="DIR", help="folder to write the app into")
    app.add_argument("--overwrite", action="store_true", help="allow an output folder that already has results")
    return parser


def add_config_arguments(parser: argparse.ArgumentParser, results: bool) -> None:
    """The config file and its ``key=value`` overrides; with ``results``, also --overwrite and
    --quiet for commands that write a results folder."""
    parser.add_argument("config", nargs="?", help="YAML config file (defaults apply to keys it omits)")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    if results:
        parser.add_argument("--overwrite", action="store_true",
                            help="replace an existing results folder (kept aside until the new run has written "
                                 "its first round, restored if it fails before)")
        parser.add_argument("--quiet", action="store_true", help="no per-round progress output")


def bench_names() -> list[str]:
    from pfedkit.runs.bench import BENCHMARKS

    return sorted(BENCHMARKS)


def split_config_and_overrides(config: str | None, overrides: list[str]) -> tuple[str | None, list[str]]:
    """argparse puts a leading ``k=v`` into ``config``; move it back to the overrides."""
    if config is not None and "=" in config and not Path(config).exists():
        return None, [config, *overrides]
    return config, overrides


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if hasattr(args, "config"):
        # key=value overrides may also follow the options (argparse leaves those in `extra`)
        stray = [e for e in extra if e.startswith("-") or "=" not in e]
        if stray:
            parser.error(f"unrecognized arguments: {' '.join(stray)}")
        args.config, args.overrides = split_config_and_overrides(args.config, args.overrides + extra)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "list":
            from pfedkit.cli.commands import cmd_list

            return cmd_list(args)
        if args.command == "run":
            from pfedkit.cli.commands import cmd_run

            return cmd_run(args)
        if args.command == "compare":
            from pfedkit.cli.commands import cmd_compare

            return cmd_compare(args, "pfedkit " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])))
        if args.command == "partition":
            from pfedkit.cli.commands import cmd_partition

            return cmd_partition(args)
        if args.command == "bench":
            from pfedkit.cli.commands import cmd_bench

            return cmd_bench(args, "pfedkit " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])))
        if args.command == "flower":
            from pfedkit.cli.commands import cmd_flower_app

            return cmd_flower_app(args)
        if args.command == "pretrain":
            from pfedkit.cli.commands import cmd_pretrain

            return cmd_pretrain(args)
    except PfedkitError as err:
        print(f"pfedkit: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pfedkit: interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
