"""The frozen-backbone model family: a frozen ViT, learnable prompt tokens and a linear head.

``model.name=vit``. The backbone is held outside the module tree: it is not in ``state_dict()``
or ``parameters()``, so it is never part of a payload, a checkpoint, an optimiser or a byte
count, and it cannot be trained by mistake; ``.to(device)`` still moves it. What travels is the
body (the L shared prompt tokens, none when ``prompts = 0``) and the head.

Images are resized and channel-expanded per batch on the device by the backbone
(`PromptedViT.prepare`); nothing is stored at backbone resolution.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from pfedkit.core.config import param
from pfedkit.core.errors import ConfigError
from pfedkit.models.registry import register_model
from pfedkit.models.split import SplitModel
from pfedkit.models.vit import VIT_PRESETS, PromptedViT
from pfedkit.models.vit_checkpoint import load_timm_checkpoint

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ViTOptions:
    """``model.vit.*``."""

    preset: str = param("vit_cpu_tiny", choices=tuple(VIT_PRESETS),
                        doc="backbone size when no checkpoint is given (random frozen weights)")
    checkpoint: str = param("", doc="timm-format ViT checkpoint (.safetensors/.pth), e.g. from `pfedkit pretrain`")
    prompts: int = param(10, lo=0, hi=1024, doc="L, prompt tokens (0 = linear probe on frozen features)")
    deep: bool = param(False, doc="deep VPT: fresh prompt tokens at every block (default shallow)")
    normalize: str = param("none", choices=("none", "imagenet"),
                           doc="input normalisation the backbone expects (imagenet for timm checkpoints)")

    def __post_init__(self) -> None:
        if self.checkpoint and not Path(self.checkpoint).expanduser().is_file():
            raise ConfigError(f"model.vit.checkpoint={self.checkpoint!r}: no such file")


class PromptTokens(nn.Module):
    """The shared prompt: ``tokens`` (L, D) shallow or (depth, L, D) deep, N(0, 0.02^2) init;
    no parameter at all when L = 0."""

    def __init__(self, num_prompts: int, dim: int, depth: int | None) -> None:
        super().__init__()
        self.num_prompts, self.depth = num_prompts, depth
        if num_prompts > 0:
            shape = (num_prompts, dim) if depth is None else (depth, num_prompts, dim)
            self.tokens = nn.Parameter(torch.randn(shape) * 0.02)

    def shape(self, batch: int) -> tuple[int, ...]:
        """Shape of ``batch`` per-sample prompts for the backbone: (B, L, D) or (B, depth, L, D)."""
        dim = self.tokens.shape[-1]
        return (batch, self.num_prompts, dim) if self.depth is None else (batch, self.depth, self.num_prompts, dim)

    def batch(self) -> torch.Tensor | None:
        """(1, L, D) or (1, depth, L, D) for the backbone (broadcast over the batch), or None."""
        return self.tokens.unsqueeze(0) if self.num_prompts > 0 else None


class PromptedClassifier(SplitModel):
    """``logits = head(backbone(x; prompts))`` with a frozen backbone.

    Attributes:
        backbone: the frozen `PromptedViT` (not a registered submodule).
        body: `PromptTokens`, the shared prompt (what FedVPT-style methods train and share).
        head: Linear(D, C) on the final [CLS].
        fingerprint: hex digest of the backbone's weights (keys the frozen-feature cache).
        input_transform: per-batch normalisation applied before the backbone.
    """

    def __init__(self, backbone: PromptedViT, prompts: PromptTokens, num_classes: int,
                 input_transform: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__(prompts, nn.Linear(backbone.embed_dim, num_classes), backbone.embed_dim, num_classes)
        object.__setattr__(self, "backbone", backbone.freeze().eval())
        self.input_transform = input_transform
        self.fingerprint = weights_fingerprint(backbone)

    def _apply(self, fn: Callable[..., Any], recurse: bool = True) -> PromptedClassifier:  # type: ignore[override]
        """Module.to/cuda/float also reach the (unregistered) backbone."""
        super()._apply(fn, recurse)
        self.backbone._apply(fn, recurse)
        return self

    def train(self, mode: bool = True) -> PromptedClassifier:
        """The backbone stays in eval mode (it is frozen; it has no dropout or batch norm anyway)."""
        super().train(mode)
        self.backbone.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images -> (B, num_classes) logits under the shared prompt."""
        return self.head(self.features(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images -> (B, D) [CLS] under the shared prompt."""
        return self.backbone(self.input_transform(x), self.body.batch())

    def prompted_features(self, x: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images with per-sample prompts (B, L, D) or (B, depth, L, D) -> (B, D)."""
        return self.backbone(self.input_transform(x), prompts)

    @torch.no_grad()
    def frozen_features(self, x: torch.Tensor) -> torch.Tensor:
        """e(x): the prompt-free [CLS], (B, C, H, W) -> (B, D), no gradient."""
        return self.backbone(self.input_transform(x))


def weights_fingerprint(module: nn.Module) -> str:
    """Hex SHA-256 (16 chars) over the module's tensors, names and shapes included."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _normaliser(kind: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if kind == "none":
        return lambda x: x
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]

    def normalise(x: torch.Tensor) -> torch.Tensor:
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        return (x - mean.to(x)) / std.to(x)

    return normalise


@register_model("vit", ViTOptions)
def prompted_vit(input_shape: tuple[int, int, int], num_classes: int, options: ViTOptions) -> PromptedClassifier:
    """A frozen ViT (the checkpoint's, else a random one of ``preset``) with ``options.prompts``
    shared prompt tokens (shallow or deep) and a linear head. Any image size and 1 or 3
    channels: the backbone resizes per batch."""
    if options.checkpoint:
        backbone = load_timm_checkpoint(Path(options.checkpoint).expanduser())
    else:
        backbone = PromptedViT.from_preset(options.preset)
    depth = backbone.depth if options.deep else None
    return PromptedClassifier(backbone, PromptTokens(options.prompts, backbone.embed_dim, depth), num_classes,
                              _normaliser(options.normalize))


def linear_probe_model(feature_dim: int, num_classes: int) -> SplitModel:
    """The model methods run on cached frozen features: identity body on (B, D) inputs, linear head."""
    return SplitModel(nn.Identity(), nn.Linear(feature_dim, num_classes), feature_dim, num_classes)
