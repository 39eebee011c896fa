"""Offline pretraining: cached by recipe hash, loadable as a timm checkpoint, disjoint from the target."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from pfedkit.cli.main import main
from pfedkit.core.config import DataConfig, default_data_root, load_config
from pfedkit.core.errors import ConfigError
from pfedkit.core.seeding import derive_seed
from pfedkit.data.domains.digits_md import (
    DEFAULT_MNIST_PER_CLASS,
    DEFAULT_SYN_PER_CLASS,
    IMAGE_SIZE,
    digits_md_cache_path,
)
from pfedkit.data.domains.font_digits import render_font_digits
from pfedkit.models.vit import VIT_PRESETS, PromptedViT, ViTSpec
from pfedkit.models.vit_checkpoint import load_timm_checkpoint
from pfedkit.runs import pretrain as pt

TEST_PRESET = "vit_test_8px"
TINY_TARGET = ("data.dataset=digits", "data.num_clients=3", "data.max_samples=240", "partition.scheme=dirichlet",
               "partition.alpha=1", "partition.min_size=10")


@pytest.fixture(autouse=True)
def tiny_world(tmp_path, monkeypatch):
    """A tmp cache (never the user's) and an 8x8, one-block ViT preset (64-wide head, so the
    timm loader infers its head count)."""
    monkeypatch.setenv("PFEDKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(VIT_PRESETS, TEST_PRESET, ViTSpec(img_size=8, patch_size=4, embed_dim=64, depth=1, num_heads=1))


def tiny_options(**changes) -> pt.PretrainOptions:
    base = pt.PretrainOptions(source="syndigits", preset=TEST_PRESET, samples=64, epochs=1, batch_size=32, threads=1)
    return dataclasses.replace(base, **changes)


def test_checkpoint_loads_as_timm_and_is_reused(tmp_path, monkeypatch):
    opts = tiny_options(target=DataConfig(dataset="digits"))
    path = pt.pretrain_backbone(opts)
    assert path.parent == tmp_path / "cache" / "backbones"
    assert path.name == f"{TEST_PRESET}-syndigits-{opts.recipe_hash()[:16]}.safetensors"
    assert not [p for p in path.parent.iterdir() if p != path]  # no temporary file left behind
    loaded = load_timm_checkpoint(path)
    assert loaded.spec == VIT_PRESETS[TEST_PRESET]
    assert set(loaded.state_dict()) == set(PromptedViT.from_preset(TEST_PRESET).state_dict())
    assert pt.checkpoint_metadata(path)["num_heads"] == "1"

    mtime = path.stat().st_mtime_ns
    monkeypatch.setattr(pt, "train_backbone", lambda *a, **k: pytest.fail("trained again for a cached recipe"))
    lines = []
    assert pt.pretrain_backbone(opts, lines.append) == path
    assert path.stat().st_mtime_ns == mtime and "reusing" in lines[0]


def test_training_is_deterministic(tmp_path):
    a = pt.pretrain_backbone(tiny_options(cache_dir=str(tmp_path / "a")))
    b = pt.pretrain_backbone(tiny_options(cache_dir=str(tmp_path / "b")))
    sa, sb = load_timm_checkpoint(a).state_dict(), load_timm_checkpoint(b).state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_recipe_decides_the_path():
    base = tiny_options()
    paths = {base.checkpoint_path()}
    for change in ({"epochs": 2}, {"seed": 1}, {"samples": 65}, {"lr": 2e-3}, {"source": "fashion-mnist"}):
        paths.add(dataclasses.replace(base, **change).checkpoint_path())
    assert len(paths) == 6
    # where it runs is not part of the recipe
    assert dataclasses.replace(base, threads=2, device="auto").checkpoint_path() == base.checkpoint_path()


@pytest.mark.parametrize("source, target", [
    ("digits", "digits"), ("mnist", "digits-md"), ("fashion-mnist+digits-md", "mnist"), ("digits-md", "digits"),
])
def test_overlapping_source_is_refused_before_any_work(source, target, tmp_path):
    with pytest.raises(ConfigError, match="shares images") as err:
        pt.pretrain_backbone(tiny_options(source=source, target=DataConfig(dataset=target)))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "cache").exists()


def test_identical_images_are_caught_by_hash():
    from pfedkit.data.registry import load_source

    pool = load_source("digits", "unused")
    same = pt.SourceData(pool.x[:5].mul(255).round().to(torch.uint8).expand(-1, 3, -1, -1), pool.y[:5], 10)
    with pytest.raises(ConfigError, match="holds 5 image"):
        pt.check_disjoint(same, DataConfig(dataset="digits"))


@pytest.mark.parametrize("seed", [0, 1])
def test_syndigits_renders_share_no_image_with_digits_md_renders(seed):
    """The digits-md way of rendering its syndigits domain (seed stream of `build_digits_md`,
    labels in class blocks; 20 per class here) against the pretraining renders of the same
    seed, byte for byte."""
    syn_seq = np.random.SeedSequence(seed).spawn(3)[1]
    target = render_font_digits(np.repeat(np.arange(10), 20), np.random.default_rng(syn_seq), IMAGE_SIZE)
    target = torch.from_numpy(np.rint(target * 255.0).astype(np.uint8))
    source, labels = pt.render_syndigits(200, derive_seed(seed, 1))
    assert source.shape == (200, 3, IMAGE_SIZE, IMAGE_SIZE) and source.dtype == np.uint8
    assert not pt.image_hashes(torch.from_numpy(source)) & pt.image_hashes(target)


def test_syndigits_share_no_image_with_the_real_digits_md():
    """Against the actual digits-md pool (all four domains), when its cache file is on this machine."""
    cache = digits_md_cache_path(Path(default_data_root()).expanduser(), 0, DEFAULT_MNIST_PER_CLASS,
                                 DEFAULT_SYN_PER_CLASS)
    if not cache.is_file():
        pytest.skip(f"no digits-md cache at {cache}")
    with np.load(cache) as arrays:
        target = torch.from_numpy(arrays["x"])
    source, _ = pt.render_syndigits(2000, derive_seed(0, 1))
    assert not pt.image_hashes(torch.from_numpy(source)) & pt.image_hashes(target)


def test_source_names_are_checked():
    for bad in ("", "nosuch", "syndigits+", "syndigits+syndigits"):
        with pytest.raises(ConfigError, match="--source"):
            pt.check_options(tiny_options(source=bad))
    with pytest.raises(ConfigError, match="--epochs=0"):
        pt.check_options(tiny_options(epochs=0))


def test_linear_probe_beats_nothing():
    cfg = load_config(None, list(TINY_TARGET))
    acc = pt.linear_probe_accuracy(pt.random_backbone(TEST_PRESET), cfg)
    assert 0.3 < acc <= 1.0  # 10 classes; a random 8x8 ViT still separates sklearn digits


def test_cli_pretrain_runs_and_reports(tmp_path, capsys):
    out = tmp_path / "copy" / "backbone.safetensors"
    args = ["pretrain", *TINY_TARGET, "--source", "syndigits", "--samples", "64", "--epochs", "1",
            "--preset", TEST_PRESET, "--threads", "1", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr()
    assert "checkpoint: " in printed.out and "linear probe on digits" in printed.out
    assert "epoch 1/1" in printed.err
    load_timm_checkpoint(out)
    assert main(args + ["--no-probe"]) == 0
    assert "reusing" in capsys.readouterr().err


@pytest.mark.parametrize("extra, fragment", [
    (["--source", "nosuch"], "unknown source 'nosuch'"),
    (["--source", "digits"], "shares images"),
    (["--preset", "vit_huge"], "--preset='vit_huge'"),
    (["--out", "backbone.pt"], "must be a file path ending in .safetensors"),
])
def test_cli_bad_input_one_line_exit_2(extra, fragment, tmp_path, capsys):
    assert main(["pretrain", *TINY_TARGET, "--samples", "64", "--epochs", "1", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1
    assert not (tmp_path / "cache").exists()
