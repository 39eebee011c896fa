"""``pfedkit bench speed``: seconds per training round of FedAvg, FedRep and pFedGM at 20, 100 and
1,000 clients, the serial path (one client after another) against the batched path (the round's
clients stacked, ``simulate.batched=always``), and both against the floor: a plain centralized
loop, one model and one torch.optim optimiser, over the same minibatches of the same samples.

For each client count the data and partition are built once; then, per method, the serial run
and the batched run follow each other in the same process, so a shared machine slows both alike
(`measure` can repeat the pair and keep each mode's fastest; the command runs it once). A run's seconds per round are
the mean over its training rounds after the first (the first pays one-off costs; pFedGM's
statistics-only round 0 is not counted). Wall seconds are what a user waits; the CPU seconds of
the process (``time.process_time``, evaluation subtracted) are what the ratios use on a CPU, since
on a machine shared with other jobs they vary far less than wall time. Peak memory is the process's resident set, sampled
every 10 ms during the run (an upper bound for that run: the process also holds the data and
whatever earlier runs left to the allocator); on a GPU the peak of
``torch.cuda.max_memory_allocated``, and the GPU utilisation when ``torch.cuda.utilization``
can read it. One evaluation of every client (large batches, no gradient) is timed after each
run for the evaluation-versus-training cost.

Scales (all 70,000 Fashion-MNIST images, Dirichlet 0.5 with at least 10 images per client:
Dirichlet 0.1 cannot give 1,000 clients enough images each for a test split):
  * ``cpu`` (default): the small CNN (width 16, 64 features), batch 10, one local epoch, 2 rounds
    (round 2 is timed); about 20 minutes on two cores shared with other jobs.
  * ``gpu``: the CNN at width 32 with 128 features, 4 rounds, ``device=auto``.

Writes ``<out>/speed/<scale>.md`` (the table), ``<scale>.json`` (every number) and
``<scale>.png`` (seconds per round against clients, log-log).
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from pfedkit.algorithms.registry import build_algorithm
from pfedkit.algorithms.toolkit.training import batches, make_optimizer
from pfedkit.core.config import RunConfig, load_config
from pfedkit.core.errors import ConfigError
from pfedkit.core.seeding import torch_generator
from pfedkit.data.setup import FederatedData, build_federated_data
from pfedkit.engines.callbacks import Callback, EngineState
from pfedkit.engines.simulate import SimulationSettings, Simulator, resolve_device, sample_clients
from pfedkit.runs.bench.suite import BenchOptions
from pfedkit.runs.experiment import seeded_model
from pfedkit.runs.results import write_json

BENCH = "speed"
ALGORITHMS = ("fedavg", "fedrep", "pfedgm")
CLIENTS = (20, 100, 1000)
MODES = ("serial", "batched")
SCALES: dict[str, tuple[str, ...]] = {
    "cpu": ("data.dataset=fashion-mnist", "partition.alpha=0.5", "partition.min_size=10", "model.cnn.width=16",
            "model.cnn.feature_dim=64", "train.batch_size=10", "train.local_epochs=1", "train.lr=0.05",
            "train.momentum=0.9", "train.rounds=2", "device=cpu"),
    "gpu": ("data.dataset=fashion-mnist", "partition.alpha=0.5", "partition.min_size=10", "model.cnn.width=32",
            "model.cnn.feature_dim=128", "train.batch_size=10", "train.local_epochs=1", "train.lr=0.05",
            "train.momentum=0.9", "train.rounds=4", "device=auto"),
}
"""Config overrides of each scale (the client count and the method come on top)."""


@dataclass
class SpeedRow:
    """One (method, clients, mode) measurement."""

    algorithm: str
    clients: int
    mode: str
    seconds_per_round: float
    cpu_seconds_per_round: float
    samples_per_round: float
    peak_memory_mb: float
    eval_seconds: float
    gpu_utilisation: float | None = None


class PeakMemory:
    """Samples the process's resident memory (and, on CUDA, allocated memory and utilisation)
    every ``interval`` seconds in a thread, from ``with`` entry to exit; ``peak_mb`` afterwards."""

    def __init__(self, device: torch.device, interval: float = 0.01) -> None:
        self.device, self.interval = device, interval
        self.peak_mb, self.utilisation = 0.0, None
        self._stop = threading.Event()
        self._util: list[float] = []

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        self.utilisation = statistics.mean(self._util) if self._util else None

    def _sample(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        while not self._stop.is_set():
            if self.device.type != "cuda":
                self.peak_mb = max(self.peak_mb, _resident_pages() * page / 2**20)
            else:
                try:
                    self._util.append(float(torch.cuda.utilization(self.device)))
                except Exception:  # noqa: BLE001 (no NVML: utilisation not measurable)
                    pass
            self._stop.wait(self.interval)


def _resident_pages() -> int:
    """Resident pages of this process (Linux /proc; 0 elsewhere)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0


class CpuClock(Callback):
    """The process's CPU seconds (``time.process_time``) at the end of every round."""

    def __init__(self) -> None:
        self.at: dict[int, float] = {}

    def on_round_end(self, record: dict[str, Any], state: EngineState) -> None:
        self.at[record["round"]] = time.process_time()


def plain_loop(cfg: RunConfig, fed: FederatedData, rounds: list[int]) -> tuple[float, float]:
    """(wall, CPU) seconds of the floor: one model, one torch.optim optimiser, visiting in order
    the minibatches every sampled client visits in ``rounds`` (same generators, same samples),
    without federation (no loading, no per-client state, no averaging)."""
    device = resolve_device(cfg.device)
    model = seeded_model(cfg, fed.input_shape, fed.num_classes).to(device)
    opt = make_optimizer(list(model.parameters()), cfg.train)
    train_ids = [c.client_id for c in fed.clients if not c.heldout]
    model.train()
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for r in rounds:
        for k in sample_clients(cfg.seed, r, train_ids, cfg.train.client_fraction):
            c = fed.clients[k]
            x, y = c.x_train.to(device), c.y_train.to(device)
            gen = torch_generator(cfg.seed, r, k)
            for _ in range(cfg.train.local_epochs):
                for idx in batches(c.num_train, cfg.train.batch_size, gen):
                    idx = idx.to(device)
                    loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
    _sync(device)
    return time.perf_counter() - t0, time.process_time() - c0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_run(cfg: RunConfig, fed: FederatedData, mode: str) -> SpeedRow:
    """Run ``cfg`` on ``fed`` with the serial or the batched path; its `SpeedRow`."""
    device = resolve_device(cfg.device)
    model = seeded_model(cfg, fed.input_shape, fed.num_classes)
    algo = build_algorithm(cfg.algorithm, model, cfg.hparams(), cfg.train, fed.num_classes, cfg.seed)
    settings = SimulationSettings(cfg.seed, cfg.train.rounds, cfg.train.client_fraction, cfg.train.rounds + 1,
                                  cfg.device, batched="always" if mode == "batched" else "never")
    clock = CpuClock()
    sim = Simulator(algo, fed.clients, settings, [clock])
    with PeakMemory(device) as memory:
        result = sim.run()
    training = [r for r in result.history if r["round"] >= 2]
    samples = statistics.mean(sum(fed.clients[k].num_train for k in r["clients"]) for r in training)
    t0, c0 = time.perf_counter(), time.process_time()
    sim.evaluate_all(result.server, result.client_states, cfg.train.rounds)  # as the last round's evaluation
    _sync(device)
    eval_seconds, eval_cpu = time.perf_counter() - t0, time.process_time() - c0
    last = cfg.train.rounds
    cpu = (clock.at[last] - clock.at[1] - eval_cpu) / len(training)
    return SpeedRow(cfg.algorithm, len(fed.clients), mode, statistics.mean(r["seconds"] for r in training), cpu,
                    samples * cfg.train.local_epochs, memory.peak_mb, eval_seconds, memory.utilisation)


def measure(overrides: list[str], algorithms: list[str], clients: list[int], repeats: int = 1,
            log: Any = None) -> tuple[list[SpeedRow], dict[int, tuple[float, float]]]:
    """Every (method, clients, mode) row and the floor's (wall, CPU) seconds per round at each
    client count; serial and batched alternate ``repeats`` times, each keeping its fastest run."""
    rows: list[SpeedRow] = []
    floors: dict[int, tuple[float, float]] = {}
    for n in clients:
        base = load_config(None, [*overrides, f"data.num_clients={n}"])
        if base.threads:
            torch.set_num_threads(base.threads)
        fed = build_federated_data(base.data, base.partition, base.seed)
        timed = list(range(2, base.train.rounds + 1))
        plain_loop(base, fed, [1])  # warm-up
        times = [plain_loop(base, fed, timed) for _ in range(repeats)]
        wall, cpu = (min(t[i] for t in times) / len(timed) for i in (0, 1))
        floors[n] = (wall, cpu)
        _log(log, f"[speed] {n} clients: floor {wall:.3f} s/round ({cpu:.3f} CPU s)")
        for name in algorithms:
            cfg = load_config(None, [*overrides, f"data.num_clients={n}", f"algorithm={name}"])
            best: dict[str, SpeedRow] = {}
            for _ in range(repeats):
                for mode in MODES:
                    row = time_run(cfg, fed, mode)
                    if mode not in best or row.seconds_per_round < best[mode].seconds_per_round:
                        best[mode] = row
            for mode in MODES:
                rows.append(best[mode])
                r = best[mode]
                _log(log, f"[speed] {name} {n} clients {mode}: {r.seconds_per_round:.3f} s/round "
                          f"({r.cpu_seconds_per_round:.3f} CPU s), peak {r.peak_memory_mb:.0f} MB, "
                          f"eval {r.eval_seconds:.2f} s")
    return rows, floors


def _log(log: Any, line: str) -> None:
    print(line, file=log or sys.stderr, flush=True)


def table(rows: list[SpeedRow], floors: dict[int, tuple[float, float]]) -> str:
    """The markdown table of the rows: seconds per round (wall), the batched path's speed-up (wall
    and CPU time), each path's time per sample relative to the floor (CPU time; the floor visits
    the same samples), peak memory, evaluation cost."""
    lines = ["| method | clients | serial s/round | batched s/round | batched speed-up (wall) | "
             "batched speed-up (CPU) | serial / floor (CPU) | batched / floor (CPU) | peak MB serial | "
             "peak MB batched | eval s (all clients) | eval / train round |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    by_key = {(r.algorithm, r.clients, r.mode): r for r in rows}
    for (name, n) in dict.fromkeys((r.algorithm, r.clients) for r in rows):
        s, b = by_key[(name, n, "serial")], by_key[(name, n, "batched")]
        floor = floors[n][1]
        lines.append(f"| {name} | {n} | {s.seconds_per_round:.3f} | {b.seconds_per_round:.3f} | "
                     f"{s.seconds_per_round / b.seconds_per_round:.2f}x | "
                     f"{s.cpu_seconds_per_round / b.cpu_seconds_per_round:.2f}x | "
                     f"{s.cpu_seconds_per_round / floor:.2f} | {b.cpu_seconds_per_round / floor:.2f} | "
                     f"{s.peak_memory_mb:.0f} | {b.peak_memory_mb:.0f} | "
                     f"{s.eval_seconds:.2f} | {s.eval_seconds / s.seconds_per_round:.2f} |")
    lines.append("")
    lines.append("Floor (plain centralized loop over the same minibatches), s/round (wall / CPU): "
                 + ", ".join(f"{n} clients {w:.3f} / {c:.3f}" for n, (w, c) in floors.items()))
    util = [r for r in rows if r.gpu_utilisation is not None]
    if util:
        lines.append("")
        lines.append("GPU utilisation (mean of 10 ms samples): " + ", ".join(
            f"{r.algorithm} {r.clients} {r.mode} {r.gpu_utilisation:.0f} %" for r in util))
    return "\n".join(lines) + "\n"


def plot(rows: list[SpeedRow], floors: dict[int, tuple[float, float]], path: Path, title: str,
         cpu: bool = True) -> None:
    """Seconds per round against clients (log x): one colour per method, serial solid, batched
    dashed, the floor dotted; CPU seconds (``cpu``, robust on a shared machine) or wall seconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for i, name in enumerate(dict.fromkeys(r.algorithm for r in rows)):
        for mode, style in zip(MODES, ("-o", "--s")):
            pts = sorted((r.clients, r.cpu_seconds_per_round if cpu else r.seconds_per_round)
                         for r in rows if r.algorithm == name and r.mode == mode)
            ax.plot(*zip(*pts), style, color=f"C{i}", label=f"{name} {mode}")
    ax.plot(*zip(*sorted((n, f[1] if cpu else f[0]) for n, f in floors.items())), ":k", label="floor (plain loop)")
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("clients")
    ax.set_ylabel(f"{'CPU' if cpu else 'wall'} seconds per training round")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(opts: BenchOptions) -> int:
    """``pfedkit bench speed``: ``--settings`` picks client counts (e.g. ``20,100``), ``--algos``
    the methods (``--seeds`` does not apply: one seed, one serial/batched pair each)."""
    try:
        clients = [int(s) for s in opts.settings] or list(CLIENTS)
    except ValueError:
        raise ConfigError(f"--settings={','.join(opts.settings)}: bench speed takes client counts, e.g. 20,100,1000"
                          ) from None
    algorithms = list(opts.algos) or list(ALGORITHMS)
    out = opts.out / BENCH
    page = out / f"{opts.scale}.md"
    if page.exists() and not opts.overwrite:
        raise ConfigError(f"bench speed: {page} already holds results; pass --overwrite to replace them or --out DIR "
                          "to write elsewhere")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows, floors = measure(list(SCALES[opts.scale]), algorithms, clients)
    minutes = (time.perf_counter() - t0) / 60
    title = f"pfedkit bench speed --scale {opts.scale} (settings: {opts.scale}.md)"
    on_cpu = resolve_device(load_config(None, list(SCALES[opts.scale])).device).type == "cpu"
    plot(rows, floors, out / f"{opts.scale}.png", title, cpu=on_cpu)
    write_json(out / f"{opts.scale}.json", {"overrides": SCALES[opts.scale], "floors": floors,
                                            "rows": [asdict(r) for r in rows], "minutes": minutes,
                                            "threads": torch.get_num_threads()})
    command = opts.command or f"pfedkit bench speed --scale {opts.scale}"
    page.write_text(f"# Speed: serial vs batched vs the floor ({opts.scale} scale)\n\nCommand: `{command}`\n\n"
                    f"Settings: `{' '.join(SCALES[opts.scale])}`, {torch.get_num_threads()} torch thread(s), "
                    f"seed 0; {minutes:.1f} minutes in all.\n\n"
                    + table(rows, floors) + f"\n![seconds per round]({opts.scale}.png)\n")
    print(f"bench speed: {page}")
    return 0
