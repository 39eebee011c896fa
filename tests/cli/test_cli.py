"""CLI: bad configs give one line and exit code 2 before any work; results folders are protected."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pfedkit.cli.main import main

TINY = ["data.num_clients=4", "model.cnn.width=4", "model.cnn.feature_dim=8", "train.rounds=2", "train.batch_size=32"]


@pytest.mark.parametrize("args, fragment", [
    (["run", "trian.rounds=3"], "unknown config key 'trian'; did you mean 'train'?"),
    (["run", "train.lr=0"], "train.lr=0 is out of range; allowed (0, 10]"),
    (["run", "algorithm=fedavgg"], "unknown algorithm 'fedavgg'; did you mean 'fedavg'?"),
    (["run", "hp.fedprox.muu=1"], "unknown config key 'hp.fedprox.muu'; did you mean 'hp.fedprox.mu'?"),
    (["run", "data.dataset=nosuch"], "unknown dataset 'nosuch'"),
    (["compare", "--algos", "fedavg,nosuch", "--seeds", "1"], "unknown algorithm 'nosuch'"),
])
def test_bad_config_one_line_exit_2(args, fragment, capsys, tmp_path):
    code = main(args + [f"output={tmp_path / 'out'}"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert fragment in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_run_writes_results_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", *TINY, f"output={out}", "--quiet"]) == 0
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "curve.png"):
        assert (out / name).exists(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["selected_round"] in (1, 2)
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    capsys.readouterr()
    assert main(["run", *TINY, f"output={out}", "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["run", *TINY, f"output={out}", "--quiet", "--overwrite"]) == 0


def test_cli_resume_equals_uninterrupted(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(["run", *TINY, "train.rounds=4", f"output={full}", "--quiet"]) == 0
    assert main(["run", *TINY, "train.rounds=2", "checkpoint_every=2", f"output={part}", "--quiet"]) == 0
    assert main(["run", *TINY, "train.rounds=4", "checkpoint_every=2", f"output={part}", "--quiet", "--resume"]) == 0
    strip = lambda p: [{k: v for k, v in json.loads(line).items() if k != "seconds"}  # noqa: E731
                       for line in (p / "metrics.jsonl").read_text().splitlines()]
    assert strip(part) == strip(full)


def test_compare_prints_a_table(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", *TINY, "--algos", "local,fedavg", "--seeds", "2", "--quiet", f"output={out}"]) == 0
    table = capsys.readouterr().out
    assert "| local |" in table and "| fedavg |" in table and "±" in table
    assert (out / "table.md").exists() and (out / "curves.png").exists()
    assert (out / "fedavg" / "seed1" / "summary.json").exists()


def test_partition_command_prints_hash_and_plots(tmp_path, capsys):
    png = tmp_path / "p.png"
    assert main(["partition", *TINY, "--plot", "--out", str(png)]) == 0
    out = capsys.readouterr().out
    assert "hash" in out and png.exists() and png.stat().st_size > 1000


def test_help_for_each_command(capsys):
    for cmd in ("run", "compare", "partition"):
        with pytest.raises(SystemExit) as exc:
            main([cmd, "--help"])
        assert exc.value.code == 0
        assert "usage: pfedkit " + cmd in capsys.readouterr().out


def test_partition_plot_writes_corruption_sample_grid(tmp_path, capsys):
    png = tmp_path / "p.png"
    assert main(["partition", *TINY, "partition.corruption=random", "--plot", "--out", str(png)]) == 0
    assert (tmp_path / "samples_corruptions.png").stat().st_size > 1000
    assert "corruption" in capsys.readouterr().out


def test_compare_with_two_workers_equals_sequential(tmp_path, capsys):
    seq, par = tmp_path / "seq", tmp_path / "par"
    args = ["compare", *TINY, "--algos", "local,fedavg", "--seeds", "2", "--quiet"]
    assert main(args + [f"output={seq}"]) == 0
    assert main(args + ["--workers", "2", f"output={par}"]) == 0
    for algo in ("local", "fedavg"):
        for seed in (0, 1):
            a = json.loads((seq / algo / f"seed{seed}" / "summary.json").read_text())
            b = json.loads((par / algo / f"seed{seed}" / "summary.json").read_text())
            assert a["selected"] == b["selected"] and a["last"] == b["last"]


def _stat(pid: int) -> tuple[str, int]:
    """(state letter, parent pid) of a process from Linux /proc; ("Z", 0) once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return "Z", 0
    return fields[0], int(fields[1])


def _alive(pids: list[int]) -> list[int]:
    return [p for p in pids if _stat(p)[0] != "Z"]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_compare_workers_exit_when_the_main_process_is_killed(tmp_path):
    args = [sys.executable, "-m", "pfedkit.cli.main", "compare", *TINY, "train.rounds=100000", "--algos",
            "local,fedavg", "--workers", "2", "--quiet", f"output={tmp_path / 'out'}"]
    main_proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not (tmp_path / "out" / "local").exists() and time.time() < deadline:  # workers running
        time.sleep(0.2)
    workers = _alive([int(d.name) for d in Path("/proc").glob("[0-9]*") if _stat(int(d.name))[1] == main_proc.pid])
    assert len(workers) >= 2
    main_proc.send_signal(signal.SIGKILL)
    main_proc.wait()
    deadline = time.time() + 15
    while _alive(workers) and time.time() < deadline:
        time.sleep(0.2)
    orphans = _alive(workers)
    for w in orphans:
        os.kill(w, signal.SIGKILL)
    assert not orphans


def test_list_shows_algorithms_datasets_schemes_and_models(capsys, tmp_path):
    assert main(["list", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "pfedgm" in out and "shares: body and navigator" in out and "hp:     lambda_local" in out
    assert "digits         present: 1797 images, 10 classes" in out
    assert "cifar10        missing" in out
    assert "partition schemes (partition.scheme=NAME): iid, dirichlet" in out
    assert "resnet18    width=64, norm=batch" in out
    assert main(["list", "models"]) == 0
    assert "algorithms" not in capsys.readouterr().out


def test_every_help_points_to_list(capsys):
    for command in ("run", "compare", "partition", "bench"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "pfedkit list" in " ".join(capsys.readouterr().out.split())


def test_compare_tune_lr_runs_each_algorithm_at_the_rate_its_search_chose(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["compare", *TINY, "--algos", "local,fedavg", "--seeds", "1", "--tune-lr", "0.01,0.3", "--quiet",
                 f"output={out}"]) == 0
    picked = dict(re.findall(r"^lr search (\w+): .* => ([\d.]+)$", capsys.readouterr().err, flags=re.M))
    assert set(picked) == {"local", "fedavg"}
    for algo, lr in picked.items():
        assert yaml.safe_load((out / algo / "seed0" / "config.yaml").read_text())["train"]["lr"] == float(lr)
