"""Load the backbone of a timm-format ViT checkpoint (e.g. ViT-B/16) from a local file.

Supported: the classic timm ``VisionTransformer`` layout (class token, learned positional
embedding with an entry for the class token, pre-norm blocks with biased qkv, final ``norm``).
The shape of the model is read from the tensors; only the number of attention heads cannot
be, so it defaults to embed_dim // 64 (right for ViT-Ti/S/B/L) and can be given explicitly.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from pfedkit.core.errors import ConfigError
from pfedkit.models.vit import PromptedViT, ViTSpec

_TORCH_SUFFIXES = (".pth", ".pt", ".bin")
_DROPPED_PREFIXES = ("head.", "head_dist.", "fc_norm.")  # classifier parts, not the backbone
_BLOCK_KEY = re.compile(r"blocks\.(\d+)\.")
_HEAD_DIM = 64


def load_timm_checkpoint(path: str | Path, num_heads: int | None = None) -> PromptedViT:
    """Build a PromptedViT from a timm ViT checkpoint and load its backbone weights strictly.

    Args:
        path: a ``.safetensors`` file, or a ``.pth`` / ``.pt`` / ``.bin`` torch file holding a
            state dict (bare, or under ``"model"`` or ``"state_dict"``).
        num_heads: attention heads per block; default: the ``num_heads`` a ``.safetensors``
            file records in its metadata (as `pfedkit pretrain` writes it), else embed_dim // 64.
    Returns:
        The model on CPU in float32, not frozen (call ``.freeze()``); its classifier head
        (``head.*``) is dropped.
    Raises:
        ConfigError: one line naming the file and the problem (missing file, unknown format,
            unreadable file, not a classic ViT, missing or mismatched tensors).
    """
    path = Path(path)
    state = _read_state_dict(path)
    if num_heads is None:
        num_heads = _recorded_num_heads(path)
    spec = _infer_spec(path, state, num_heads)
    model = PromptedViT(spec)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ConfigError(f"{path}: does not match a ViT of {spec}: {_one_line(exc)}") from None
    return model


def _recorded_num_heads(path: Path) -> int | None:
    """``num_heads`` from a .safetensors header's metadata, if the file records it."""
    if path.suffix.lower() != ".safetensors":
        return None
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        heads = (f.metadata() or {}).get("num_heads")
    return int(heads) if heads and heads.isdigit() else None


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Backbone tensors of the file, by timm name (``module.`` prefix and classifier keys removed)."""
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint file not found")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ConfigError(
                f"{path}: reading .safetensors needs the safetensors package (pip install safetensors)"
            ) from None
        try:
            raw: object = load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types
            raise ConfigError(f"{path}: not a readable safetensors file: {_one_line(exc)}") from None
    elif suffix in _TORCH_SUFFIXES:
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle, zip and weights-only errors alike
            raise ConfigError(f"{path}: not a readable torch checkpoint: {_one_line(exc)}") from None
        if isinstance(raw, dict):
            for key in ("model", "state_dict"):
                if isinstance(raw.get(key), dict):
                    raw = raw[key]
                    break
    else:
        raise ConfigError(f"{path}: unknown checkpoint format {suffix or '(no suffix)'!r}; "
                          f"expected .safetensors, {', '.join(_TORCH_SUFFIXES)}")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: holds a {type(raw).__name__}, not a state dict")
    state = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            continue
        key = key.removeprefix("module.")
        if not key.startswith(_DROPPED_PREFIXES):
            state[key] = value
    if not state:
        raise ConfigError(f"{path}: holds no tensors")
    return state


def _infer_spec(path: Path, state: dict[str, torch.Tensor], num_heads: int | None) -> ViTSpec:
    """ViTSpec from tensor shapes; raises ConfigError for anything but a classic timm ViT."""
    for key in ("reg_token", "dist_token"):
        if key in state:
            raise ConfigError(f"{path}: has {key}; only ViTs with a single class token are supported")
    missing = [k for k in ("patch_embed.proj.weight", "cls_token", "pos_embed", "norm.weight") if k not in state]
    if missing:
        raise ConfigError(f"{path}: not a timm ViT checkpoint, missing {', '.join(missing)}")
    proj = state["patch_embed.proj.weight"]
    if proj.dim() != 4 or proj.shape[2] != proj.shape[3]:
        raise ConfigError(f"{path}: patch_embed.proj.weight has shape {tuple(proj.shape)}, "
                          "expected (D, C, P, P) square patches")
    dim, in_chans, patch = proj.shape[0], proj.shape[1], proj.shape[2]
    if tuple(state["cls_token"].shape) != (1, 1, dim):
        raise ConfigError(f"{path}: cls_token has shape {tuple(state['cls_token'].shape)}, expected (1, 1, {dim})")
    pos = state["pos_embed"]
    grid = round((pos.shape[1] - 1) ** 0.5) if pos.dim() == 3 and pos.shape[1] > 1 else 0
    if pos.dim() != 3 or pos.shape[2] != dim or grid * grid + 1 != pos.shape[1]:
        raise ConfigError(f"{path}: pos_embed has shape {tuple(pos.shape)}, expected (1, 1 + G*G, {dim}) "
                          "with an entry for the class token")
    block_ids = {int(m.group(1)) for k in state if (m := _BLOCK_KEY.match(k))}
    depth = len(block_ids)
    if depth == 0 or block_ids != set(range(depth)):
        raise ConfigError(f"{path}: transformer blocks are missing or not numbered 0..depth-1")
    fc1 = state.get("blocks.0.mlp.fc1.weight")
    if fc1 is None or fc1.dim() != 2 or fc1.shape[1] != dim:
        raise ConfigError(f"{path}: blocks.0.mlp.fc1.weight is missing or not (hidden, {dim})")
    if num_heads is None:
        if dim % _HEAD_DIM:
            raise ConfigError(f"{path}: cannot infer num_heads for embed_dim {dim} (not a multiple of "
                              f"{_HEAD_DIM}); pass num_heads")
        num_heads = dim // _HEAD_DIM
    if num_heads < 1 or dim % num_heads:
        raise ConfigError(f"{path}: num_heads {num_heads} does not divide embed_dim {dim}")
    return ViTSpec(img_size=grid * patch, patch_size=patch, embed_dim=dim, depth=depth,
                   num_heads=num_heads, mlp_ratio=fc1.shape[0] / dim, in_chans=in_chans)


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line, shortened to 300 characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
