"""Runs that cannot silently go wrong: --resume refuses a changed run or a damaged checkpoint, and
nothing in a results folder is deleted before the new run is known to work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pfedkit.cli.main import main
from pfedkit.core.errors import ConfigError
from pfedkit.engines.checkpoint_file import read_checkpoint, write_checkpoint
from pfedkit.runs import results
from pfedkit.runs.experiment import check_device
from pfedkit.runs.results import MetricsWriter, OutputFolder, aside_path

TINY = ["data.num_clients=4", "data.max_samples=300", "model.cnn.width=4", "model.cnn.feature_dim=8",
        "train.batch_size=32", "--quiet"]


def run(out: Path, *args: str) -> int:
    return main(["run", *TINY, f"output={out}", *args])


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished 3-round run with a checkpoint every round (shared, read-only: tests copy it)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert run(out, "train.rounds=3", "checkpoint_every=1") == 0
    return out


def copy_of(folder: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "run"
    dest.mkdir()
    for name, data in snapshot(folder).items():
        (dest / name).write_bytes(data)
    return dest


# ----- --resume ------------------------------------------------------------------------------------
def test_resume_with_a_changed_config_names_every_differing_key(finished, tmp_path, capsys):
    out = copy_of(finished, tmp_path)
    before = snapshot(out)
    capsys.readouterr()
    assert run(out, "train.rounds=3", "checkpoint_every=1", "train.lr=0.1", "data.num_clients=3", "--resume") == 2
    assert one_line_error(capsys) == (
        "pfedkit: error: cannot resume: data.num_clients 4 -> 3, train.lr 0.05 -> 0.1 differ from the checkpoint; "
        "rerun with --overwrite or restore the config")
    assert snapshot(out) == before


def test_resume_ignores_keys_that_cannot_change_the_result(finished, tmp_path):
    out = copy_of(finished, tmp_path)
    assert run(out, "train.rounds=3", "checkpoint_every=2", "threads=2", "data.root=/elsewhere", "--resume") == 0


def test_resume_refuses_more_rounds_when_the_schedule_of_evaluations_differs(tmp_path, capsys):
    out = tmp_path / "run"
    assert run(out, "train.rounds=3", "eval_every=2", "checkpoint_every=1") == 0  # round 3 evaluated as the last
    capsys.readouterr()
    assert run(out, "train.rounds=6", "eval_every=2", "checkpoint_every=1", "--resume") == 2
    assert "round 3 was evaluated as the last round (eval_every=2), which a 6-round run does not do" in \
        one_line_error(capsys)


def test_resume_refuses_more_rounds_when_privacy_is_calibrated_to_them(tmp_path, capsys):
    from pfedkit.engines.callbacks import EngineState
    from pfedkit.runs.resume import check_resumable

    saved = {"train.rounds": 3, "privacy.epsilon": 8.0, "partition_hash": "h"}
    with pytest.raises(ConfigError, match="privacy.epsilon > 0 calibrates the noise"):
        check_resumable(saved, {**saved, "train.rounds": 6}, EngineState(3, {}, [], []), 1, "c.pt")
    check_resumable(saved | {"privacy.epsilon": 0.0}, saved | {"privacy.epsilon": 0.0, "train.rounds": 6},
                    EngineState(2, {}, [], []), 1, "c.pt")


def test_resume_refuses_a_different_partition_with_the_same_config():
    from pfedkit.engines.callbacks import EngineState
    from pfedkit.runs.resume import check_resumable

    with pytest.raises(ConfigError, match=r"cannot resume: the partition \(hash aaaaaaaaaaaa -> bbbbbbbbbbbb\)"):
        check_resumable({"seed": 0, "partition_hash": "a" * 64}, {"seed": 0, "partition_hash": "b" * 64},
                        EngineState(1, {}, [], []), 1, "c.pt")


@pytest.mark.parametrize("damage", ["truncate", "flip", "header"])
def test_damaged_checkpoint_is_refused_by_name_and_never_loaded(finished, tmp_path, capsys, monkeypatch, damage):
    out = copy_of(finished, tmp_path)
    ckpt = out / "checkpoint.pt"
    data = ckpt.read_bytes()
    if damage == "truncate":
        data = data[:len(data) // 2]
    elif damage == "flip":
        data = data[:-100] + bytes([data[-100] ^ 1]) + data[-99:]
    else:
        data = data[data.index(b"\n") + 1:]  # a bare torch.save file, as older versions wrote
    ckpt.write_bytes(data)
    before = snapshot(out)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("a damaged checkpoint was unpickled"))
    capsys.readouterr()
    assert run(out, "train.rounds=3", "checkpoint_every=1", "--resume") == 2
    err = one_line_error(capsys)
    assert str(ckpt) in err and "--overwrite" in err
    assert {"truncate": "truncated", "flip": "SHA-256", "header": "no pfedkit checksum header"}[damage] in err
    assert snapshot(out) == before


def test_checkpoint_write_is_atomic_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "checkpoint.pt"
    write_checkpoint(path, {"round": 1, "w": torch.arange(3.0)})
    write_checkpoint(path, {"round": 2, "w": torch.arange(4.0)})
    assert read_checkpoint(path)["round"] == 2 and list(tmp_path.iterdir()) == [path]


def test_resumed_metrics_drop_rounds_recorded_after_the_checkpoint(tmp_path):
    """A crash between a round's metrics line and its checkpoint must not duplicate that round."""
    history = [{"round": 1, "train_loss": 1.0}, {"round": 2, "train_loss": 0.5}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history)
                                            + '{"round": 3, "train_loss": 0.4}\n{"round": 4, "tra')
    writer = MetricsWriter(tmp_path, history)
    writer.on_run_start("fedavg", 5, start_round=3)
    writer.on_round_end({"round": 3, "train_loss": 0.3}, None)  # type: ignore[arg-type]
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == [*history, {"round": 3, "train_loss": 0.3}]


# ----- validation before the folder is touched -----------------------------------------------------
@pytest.mark.parametrize("command", ["run", "compare"])
@pytest.mark.parametrize("bad, fragment", [
    ("data.num_clients=5000", "data.num_clients=5000"),
    ("device=banana", "device 'banana' is not a torch device; use cpu, cuda, cuda:N, mps or auto"),
])
def test_overwrite_with_an_invalid_run_leaves_old_results_byte_identical(finished, tmp_path, capsys, command, bad,
                                                                         fragment):
    out = copy_of(finished, tmp_path)
    before = snapshot(out)
    capsys.readouterr()
    extra = ["--algos", "fedavg", "--seeds", "1"] if command == "compare" else []
    assert main([command, *TINY, f"output={out}", bad, "--overwrite", *extra]) == 2
    assert fragment in one_line_error(capsys)
    assert snapshot(out) == before and not aside_path(out).exists()


def test_cuda_on_a_cpu_only_torch_is_one_line(monkeypatch):
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: False)
    with pytest.raises(ConfigError, match=r"^device 'cuda': CUDA is not available in this torch build \(CPU only\); "
                                          "use device=cpu or device=auto$"):
        check_device("cuda")


def test_cuda_without_a_gpu_is_one_line(monkeypatch):
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="device 'cuda:1': this machine has no usable CUDA GPU"):
        check_device("cuda:1")


def test_overwrite_replaces_old_results_once_the_new_run_wrote_a_round(finished, tmp_path):
    out = copy_of(finished, tmp_path)
    assert run(out, "train.rounds=2", "--overwrite") == 0
    assert not (out / "checkpoint.pt").exists()  # the old run's files are gone, the new run's are there
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    assert not aside_path(out).exists()


def test_compare_overwrite_replaces_an_old_comparison(tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["compare", *TINY, "train.rounds=1", "--algos", "local", "--seeds", "1", f"output={out}"]
    assert main(args) == 0
    (out / "local" / "seed0" / "checkpoint.pt").write_bytes(b"stale")  # a file the new comparison does not write
    assert main([*args, "--overwrite"]) == 0
    assert (out / "table.md").exists() and not (out / "local" / "seed0" / "checkpoint.pt").exists()
    assert not aside_path(out).exists()


# ----- OutputFolder --------------------------------------------------------------------------------
def old_results(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    out = tmp_path / "out"
    (out / "fedavg" / "seed0").mkdir(parents=True)
    (out / "table.md").write_text("old table")
    (out / "fedavg" / "seed0" / "metrics.jsonl").write_text('{"round": 1}\n')
    return out, snapshot(out)


def test_a_failure_before_the_first_record_restores_the_old_results(tmp_path):
    out, before = old_results(tmp_path)
    with pytest.raises(RuntimeError), OutputFolder(out, overwrite=True) as folder:
        assert snapshot(folder) == {} and aside_path(out).exists()
        (folder / "config.yaml").write_text("new")
        raise RuntimeError("data failed")
    assert snapshot(out) == before and not aside_path(out).exists()


def test_a_failure_after_the_first_record_keeps_the_new_results(tmp_path):
    out, _ = old_results(tmp_path)
    with pytest.raises(RuntimeError), OutputFolder(out, overwrite=True) as folder:
        (folder / "metrics.jsonl").write_text('{"round": 1, "new": true}\n')
        raise RuntimeError("diverged at round 2")
    assert snapshot(out) == {"metrics.jsonl": b'{"round": 1, "new": true}\n'} and not aside_path(out).exists()


def test_a_failed_first_run_leaves_no_folder_behind(tmp_path):
    out = tmp_path / "new" / "run"
    with pytest.raises(RuntimeError), OutputFolder(out) as folder:
        (folder / "config.yaml").write_text("new")
        raise RuntimeError("failed in round 1")
    assert not out.exists()


def test_overwrite_refuses_a_folder_with_files_pfedkit_did_not_write(tmp_path):
    out, before = old_results(tmp_path)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"also holds files pfedkit did not write \(notes.txt\)"):
        OutputFolder(out, overwrite=True)
    assert snapshot(out) == before | {"notes.txt": b"mine"}


def test_overwrite_refuses_while_an_interrupted_overwrite_left_results_aside(tmp_path):
    out, _ = old_results(tmp_path)
    aside_path(out).mkdir()
    with pytest.raises(ConfigError, match="holds the results an interrupted --overwrite run moved aside"):
        OutputFolder(out, overwrite=True)


def test_without_overwrite_a_folder_with_results_is_refused(tmp_path):
    out, _ = old_results(tmp_path)
    with pytest.raises(ConfigError, match="already has results; pass --overwrite"):
        results.check_output_dir(out, overwrite=False, resume=False)
