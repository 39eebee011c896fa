"""A run killed with SIGKILL at random points, some of them mid-checkpoint-write, and resumed each
time, ends with exactly the metrics and summary of an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pfedkit.cli.main import main
from pfedkit.engines.callbacks import Checkpointer
from pfedkit.engines.checkpoint_file import temp_path

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

RUN = ["data.num_clients=4", "data.max_samples=240", "partition.alpha=0.5", "model.cnn.width=4",
       "model.cnn.feature_dim=8", "train.batch_size=32", "train.client_fraction=0.75", "train.rounds=10",
       "eval_every=2", "checkpoint_every=1", "algorithm=fedrep", "--quiet"]

CHILD = r"""
import os, sys, time
# Test-only instrumentation (no production branch): announce each checkpoint rename on stdout and,
# when PAUSE > 0, hold it there, with the new checkpoint written to its temporary file but not yet
# renamed over checkpoint.pt, so that the parent can kill the process mid-write.
real_replace, pause = os.replace, float(os.environ["PFEDKIT_TEST_PAUSE"])
def announced_replace(src, dst, *args, **kwargs):
    if str(dst).endswith("checkpoint.pt"):
        print("checkpoint-write", flush=True)
        time.sleep(pause)
    return real_replace(src, dst, *args, **kwargs)
os.replace = announced_replace
from pfedkit.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def start(out: Path, pause: float) -> subprocess.Popen:
    """The run as a fresh process: a fresh run, or --resume once a checkpoint exists."""
    mode = ["--resume"] if (out / "checkpoint.pt").exists() else ["--overwrite"] if out.exists() else []
    env = {**os.environ, "PFEDKIT_TEST_PAUSE": str(pause)}
    return subprocess.Popen([sys.executable, "-c", CHILD, "run", *RUN, f"output={out}", *mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def kill_at_checkpoint(proc: subprocess.Popen, nth: int, delay: float) -> bool:
    """SIGKILL ``proc`` ``delay`` s after its ``nth`` checkpoint write started; False if it ended first."""
    seen = 0
    while seen < nth:
        line = proc.stdout.readline()
        if not line:
            proc.wait()
            return False
        seen += line.strip() == "checkpoint-write"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc.returncode == -signal.SIGKILL


def strip_time(obj):
    """Drop wall-clock fields, the only thing a resumed run may change."""
    if isinstance(obj, dict):
        return {k: strip_time(v) for k, v in obj.items() if k not in ("seconds", "seconds_per_round")}
    if isinstance(obj, list):
        return [strip_time(v) for v in obj]
    return obj


def outputs(folder: Path) -> tuple[list, dict]:
    metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return strip_time(metrics), strip_time(json.loads((folder / "summary.json").read_text()))


def test_sigkill_at_random_points_then_resume_equals_an_uninterrupted_run(tmp_path):
    reference = tmp_path / "reference"
    assert main(["run", *RUN, f"output={reference}"]) == 0
    rng = random.Random(13)
    # (pause during the rename, kill at the nth checkpoint write, then after this delay):
    # mid-write kills hold the process between the temporary file and the rename; the others land
    # at a random point of the next rounds (training, evaluation, metrics line, checkpoint write).
    plan = [(0.5, rng.randint(2, 3), 0.1), (0.0, rng.randint(1, 2), rng.uniform(0.0, 0.15)),
            (0.5, rng.randint(2, 3), 0.1), (0.0, rng.randint(1, 2), rng.uniform(0.0, 0.15))]
    rng.shuffle(plan)
    out, kills, mid_write = tmp_path / "crashing", 0, 0
    for pause, nth, delay in plan:
        proc = start(out, pause)
        killed = kill_at_checkpoint(proc, nth, delay)
        stderr = proc.stderr.read()
        assert killed or proc.returncode == 0, stderr
        kills += killed
        mid_write += killed and pause > 0 and temp_path(out / "checkpoint.pt").exists()  # written, not renamed
        if (out / "checkpoint.pt").exists():  # never damaged: every kill leaves a verified checkpoint
            Checkpointer.read(out / "checkpoint.pt")
    assert kills >= 3 and mid_write >= 1, f"{kills} kills ({mid_write} mid-write) of {len(plan)} landed in time"
    proc = start(out, 0.0)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    (metrics, summary), (want_metrics, want_summary) = outputs(out), outputs(reference)
    assert [r["round"] for r in metrics] == [r["round"] for r in want_metrics]  # no round lost or repeated
    for got, want in zip(metrics, want_metrics):
        assert got == want, f"round {want['round']} differs from the uninterrupted run"
    assert summary == want_summary
