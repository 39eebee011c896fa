"""The prompted ViT backbone and the timm checkpoint loader."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from timm_shim import timm_vision_transformer

from pfedkit.core.errors import ConfigError
from pfedkit.models.vit import VIT_PRESETS, PromptedViT, ViTSpec
from pfedkit.models.vit_checkpoint import load_timm_checkpoint

TINY = ViTSpec(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3)
B, L = 4, 5


def _model(spec: ViTSpec = TINY, seed: int = 0) -> PromptedViT:
    torch.manual_seed(seed)
    model = PromptedViT(spec).eval()
    with torch.no_grad():  # non-trivial norms and biases, so every parameter matters
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def _images(n: int = B, c: int = 3, size: int = 32) -> torch.Tensor:
    return torch.randn(n, c, size, size, generator=torch.Generator().manual_seed(1))


def test_presets_and_attributes() -> None:
    assert VIT_PRESETS["vit_base_patch16"] == ViTSpec(224, 16, 768, 12, 12)
    assert VIT_PRESETS["vit_cpu_tiny"].num_patches == 64
    model = _model()
    assert (model.embed_dim, model.depth) == (48, 2)
    assert model.tokens(_images()).shape == (B, 1 + 16, 48)
    with pytest.raises(ValueError, match="does not divide"):
        ViTSpec(img_size=32, patch_size=8, embed_dim=50, depth=1, num_heads=3)


def test_shallow_prompts_are_per_sample() -> None:
    model, x = _model(), _images()
    prompts = torch.randn(B, L, 48)
    out = model(x, prompts)
    assert out.shape == (B, 48)
    assert not torch.allclose(out, model(x), atol=1e-3)
    for i in range(B):  # row i depends on image i and prompt i only
        assert torch.allclose(out[i], model(x[i : i + 1], prompts[i : i + 1])[0], atol=1e-5)
    changed = prompts.clone()
    changed[2] += torch.randn(L, 48)  # not a constant: LayerNorm would remove it
    diff = (model(x, changed) - out).abs().amax(dim=1)
    assert diff[2] > 1e-3 and torch.all(diff[[0, 1, 3]] < 1e-6)
    shared = torch.randn(1, L, 48)  # batch 1 broadcasts over the images
    assert torch.allclose(model(x, shared), model(x, shared.expand(B, -1, -1)), atol=1e-6)


def test_deep_prompts_replace_the_previous_layers_prompts() -> None:
    model, x = _model(), _images()
    seen: list[tuple[int, ...]] = []
    for block in model.blocks:
        block.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape)))
    prompts = torch.randn(B, 2, L, 48)
    out = model(x, prompts)
    assert out.shape == (B, 48)
    assert seen == [(B, 1 + L + 16, 48)] * 2  # replaced, not appended
    later = prompts.clone()
    later[:, 1] += torch.randn(B, L, 48)
    assert not torch.allclose(model(x, later), out, atol=1e-3)
    one_block = _model(ViTSpec(img_size=32, patch_size=8, embed_dim=48, depth=1, num_heads=3))
    shallow = torch.randn(B, L, 48)  # with one block, deep and shallow prompts coincide
    assert torch.allclose(one_block(x, shallow), one_block(x, shallow[:, None]), atol=1e-6)


@pytest.mark.parametrize("shape", [(B, L, 47), (3, L, 48), (B, 3, L, 48), (B, 48)])
def test_bad_prompt_shapes_are_rejected(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="prompts must be"):
        _model()(_images(), torch.zeros(shape))


def test_grey_28x28_images_are_resized_and_repeated() -> None:
    model, x = _model(), _images(c=1, size=28)
    expected = model(F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1))
    assert torch.allclose(model(x), expected, atol=1e-6)
    with pytest.raises(ValueError, match="channels"):
        model(_images(c=2))


def test_frozen_backbone_passes_gradients_to_prompts_only() -> None:
    model = _model().freeze()
    assert not any(p.requires_grad for p in model.parameters())
    prompts = torch.zeros(B, L, 48, requires_grad=True)
    model(_images(), prompts).square().sum().backward()
    assert all(p.grad is None for p in model.parameters())
    assert prompts.grad is not None and prompts.grad.abs().sum() > 0


def test_own_checkpoint_round_trip(tmp_path: Path) -> None:
    model = _model(ViTSpec(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=1))
    state = {**model.state_dict(), "head.weight": torch.zeros(10, 64), "head.bias": torch.zeros(10)}
    torch.save(state, tmp_path / "own.pt")
    loaded = load_timm_checkpoint(tmp_path / "own.pt")
    assert loaded.spec == model.spec
    assert torch.equal(loaded(_images()), model(_images()))


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_matches_timm_vision_transformer(tmp_path: Path, suffix: str) -> None:
    vision_transformer = timm_vision_transformer()
    torch.manual_seed(0)
    ref = vision_transformer(img_size=32, patch_size=8, embed_dim=128, depth=2, num_heads=2, num_classes=10).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.1 * torch.randn_like(p))
    path = tmp_path / f"vit{suffix}"
    if suffix == ".safetensors":
        pytest.importorskip("safetensors").torch.save_file(ref.state_dict(), str(path))
    else:
        torch.save({"model": ref.state_dict(), "epoch": 3}, path)
    model = load_timm_checkpoint(path).eval()
    assert model.spec == ViTSpec(img_size=32, patch_size=8, embed_dim=128, depth=2, num_heads=2)
    x = _images()
    with torch.no_grad():
        assert torch.allclose(model(x), ref.forward_features(x)[:, 0], atol=1e-5)


def test_matches_timm_with_explicit_num_heads(tmp_path: Path) -> None:
    vision_transformer = timm_vision_transformer()
    torch.manual_seed(0)
    ref = vision_transformer(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, num_classes=0).eval()
    torch.save(ref.state_dict(), tmp_path / "vit.bin")
    with pytest.raises(ConfigError, match="pass num_heads"):
        load_timm_checkpoint(tmp_path / "vit.bin")
    model = load_timm_checkpoint(tmp_path / "vit.bin", num_heads=3)
    x = _images()
    with torch.no_grad():
        assert torch.allclose(model(x), ref.forward_features(x)[:, 0], atol=1e-5)


def _valid_state() -> dict[str, torch.Tensor]:
    return PromptedViT(ViTSpec(img_size=32, patch_size=8, embed_dim=64, depth=1, num_heads=1)).state_dict()


def _write_bad(tmp_path: Path, case: str) -> Path:
    """A checkpoint file with one problem, by name."""
    if case == "missing file":
        return tmp_path / "absent.pth"
    if case == "unknown format":
        (tmp_path / "vit.npz").write_bytes(b"x")
        return tmp_path / "vit.npz"
    if case in ("garbage pth", "garbage safetensors"):
        path = tmp_path / ("vit.pth" if case == "garbage pth" else "vit.safetensors")
        path.write_bytes(b"not a checkpoint\nat all")
        return path
    state = _valid_state()
    if case == "not a dict":
        state = [1, 2]  # type: ignore[assignment]
    elif case == "missing keys":
        del state["norm.weight"]
    elif case == "register tokens":
        state["reg_token"] = torch.zeros(1, 4, 64)
    elif case == "bad pos_embed":
        state["pos_embed"] = torch.zeros(1, 16, 64)  # no entry for the class token
    elif case == "unexpected key":
        state["blocks.0.ls1.gamma"] = torch.ones(64)  # layer-scale ViT
    elif case == "wrong shape":
        state["blocks.0.attn.proj.bias"] = torch.zeros(32)
    path = tmp_path / "vit.pth"
    torch.save(state, path)
    return path


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing file", "not found"),
        ("unknown format", "unknown checkpoint format"),
        ("garbage pth", "not a readable torch checkpoint"),
        ("garbage safetensors", "not a readable safetensors file"),
        ("not a dict", "not a state dict"),
        ("missing keys", "missing norm.weight"),
        ("register tokens", "reg_token"),
        ("bad pos_embed", "pos_embed"),
        ("unexpected key", "ls1.gamma"),
        ("wrong shape", "attn.proj.bias"),
    ],
)
def test_bad_checkpoints_raise_one_line_config_errors(tmp_path: Path, case: str, message: str) -> None:
    if case == "garbage safetensors":
        pytest.importorskip("safetensors")
    path = _write_bad(tmp_path, case)
    with pytest.raises(ConfigError) as info:
        load_timm_checkpoint(path)
    text = str(info.value)
    assert "\n" not in text and str(path) in text and message in text, text
