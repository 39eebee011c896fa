"""A pre-norm Vision Transformer that takes per-sample visual prompts (VPT, shallow or deep).

Parameter names follow timm's ``VisionTransformer`` state dict (``patch_embed.proj``,
``cls_token``, ``pos_embed``, ``blocks.{i}.norm1`` / ``attn.qkv`` / ``attn.proj`` / ``norm2`` /
``mlp.fc1`` / ``mlp.fc2``, ``norm``), so the backbone part of a timm checkpoint (everything but
``head.*``) loads strictly; see ``pfedkit.models.vit_checkpoint``. There is no classifier head:
heads are separate modules that read the (B, D) [CLS] feature this backbone returns.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

_LN_EPS = 1e-6  # timm's ViT LayerNorm epsilon


@dataclass(frozen=True)
class ViTSpec:
    """Shape of a ViT: square images of ``img_size`` pixels cut into ``patch_size`` patches.

    Attributes:
        img_size: input side in pixels; images of another size are resized to it.
        patch_size: patch side in pixels; must divide ``img_size``.
        embed_dim: token width D; must be a multiple of ``num_heads``.
        depth: number of transformer blocks.
        num_heads: attention heads per block.
        mlp_ratio: MLP hidden width as a multiple of D.
        in_chans: image channels the patch embedding expects.
    """

    img_size: int
    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    in_chans: int = 3

    def __post_init__(self) -> None:
        if min(self.img_size, self.patch_size, self.embed_dim, self.depth, self.num_heads, self.in_chans) < 1:
            raise ValueError(f"ViTSpec sizes must be positive, got {self}")
        if self.img_size % self.patch_size:
            raise ValueError(f"patch_size {self.patch_size} does not divide img_size {self.img_size}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"num_heads {self.num_heads} does not divide embed_dim {self.embed_dim}")

    @property
    def num_patches(self) -> int:
        """Number of patch tokens N = (img_size / patch_size)^2."""
        return (self.img_size // self.patch_size) ** 2

    @property
    def mlp_hidden(self) -> int:
        """Hidden width of each block's MLP (as timm computes it: int(D * mlp_ratio))."""
        return int(self.embed_dim * self.mlp_ratio)


VIT_PRESETS: dict[str, ViTSpec] = {
    "vit_tiny_patch16": ViTSpec(img_size=224, patch_size=16, embed_dim=192, depth=12, num_heads=3),
    "vit_small_patch16": ViTSpec(img_size=224, patch_size=16, embed_dim=384, depth=12, num_heads=6),
    "vit_base_patch16": ViTSpec(img_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12),
    # Small sizes for CPU runs on 32x32 images (64 patch tokens).
    "vit_cpu_tiny": ViTSpec(img_size=32, patch_size=4, embed_dim=96, depth=4, num_heads=3),
    "vit_cpu_small": ViTSpec(img_size=32, patch_size=4, embed_dim=192, depth=6, num_heads=3),
    # For tests and smoke runs: 16x16 input, 16 patch tokens.
    "vit_micro": ViTSpec(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2),
}


class PatchEmbed(nn.Module):
    """Non-overlapping patches to tokens: (B, C, H, W) -> (B, N, D) with a strided convolution."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(images).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention over (B, T, D) tokens, fused qkv projection."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (B, heads, T, D / heads)
        return self.proj(out.transpose(1, 2).reshape(b, t, d))


class Mlp(nn.Module):
    """Two-layer MLP with exact GELU: (B, T, D) -> (B, T, D)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then + mlp(norm2(x)); (B, T, D) -> (B, T, D)."""

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=_LN_EPS)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=_LN_EPS)
        self.mlp = Mlp(dim, mlp_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PromptedViT(nn.Module):
    """ViT backbone returning the final [CLS] feature, optionally with visual prompt tokens.

    Token layout inside the blocks: ``[CLS, prompt_1..prompt_L, patch_1..patch_N]``. Prompts get
    no positional embedding (as in VPT). Inputs are not normalised here: pass images already
    scaled the way the weights expect (e.g. ImageNet mean/std for a timm checkpoint).

    Attributes:
        spec: the ViTSpec this model was built from.
        embed_dim: token width D.
        depth: number of blocks (the size of dim 1 of deep prompts).
    """

    def __init__(self, spec: ViTSpec) -> None:
        super().__init__()
        self.spec = spec
        self.embed_dim = spec.embed_dim
        self.depth = spec.depth
        d = spec.embed_dim
        self.patch_embed = PatchEmbed(spec.patch_size, spec.in_chans, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + spec.num_patches, d))
        self.blocks = nn.ModuleList(Block(d, spec.num_heads, spec.mlp_hidden) for _ in range(spec.depth))
        self.norm = nn.LayerNorm(d, eps=_LN_EPS)
        self._init_weights()

    @classmethod
    def from_preset(cls, name: str) -> PromptedViT:
        """A randomly initialised model of one of ``VIT_PRESETS``."""
        if name not in VIT_PRESETS:
            raise ValueError(f"unknown ViT preset {name!r}; known: {', '.join(VIT_PRESETS)}")
        return cls(VIT_PRESETS[name])

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def freeze(self) -> PromptedViT:
        """Stop gradients to every weight (gradients still flow through to prompts); returns self."""
        self.requires_grad_(False)
        return self

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Fit images to the model: (B, C, H, W) -> (B, in_chans, img_size, img_size).

        One channel is repeated when the model expects three; other sizes are resized bilinearly
        (on the images' device). Values are left as they are.
        """
        if images.dim() != 4:
            raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
        c, size = images.shape[1], self.spec.img_size
        if c != self.spec.in_chans:
            if c != 1:
                raise ValueError(f"images have {c} channels, the model expects {self.spec.in_chans}")
            images = images.expand(-1, self.spec.in_chans, -1, -1)
        if images.shape[-2:] != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        return images

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Input tokens before the first block: (B, C, H, W) -> (B, 1 + N, D), [CLS] first,
        positional embedding added."""
        patches = self.patch_embed(self.prepare(images))
        cls = self.cls_token.expand(patches.shape[0], -1, -1)
        return torch.cat([cls, patches], dim=1) + self.pos_embed

    def forward(self, images: torch.Tensor, prompts: torch.Tensor | None = None) -> torch.Tensor:
        """Final [CLS] feature after the last LayerNorm.

        Args:
            images: (B, C, H, W) float images, already normalised; see ``prepare`` for resizing.
            prompts: None (plain ViT); shallow (B, L, D): L tokens inserted after [CLS] before
                the first block; or deep (B, depth, L, D): block i sees ``prompts[:, i]`` in the
                prompt slots (replacing block i-1's prompt outputs). A batch size of 1 is
                broadcast over the B images (one shared prompt).
        Returns:
            (B, D) features.
        """
        x = self.tokens(images)
        if prompts is None:
            for block in self.blocks:
                x = block(x)
        else:
            prompts = self._check_prompts(prompts, x.shape[0])
            deep = prompts.dim() == 4
            num_prompts = prompts.shape[-2]
            for i, block in enumerate(self.blocks):
                if i == 0 or deep:
                    layer_prompts = prompts[:, i] if deep else prompts
                    keep_from = 1 if i == 0 else 1 + num_prompts  # block 0 inserts, later blocks replace
                    x = torch.cat([x[:, :1], layer_prompts.to(x.dtype), x[:, keep_from:]], dim=1)
                x = block(x)
        return self.norm(x[:, 0])

    def _check_prompts(self, prompts: torch.Tensor, batch: int) -> torch.Tensor:
        """Validate shallow (B|1, L, D) or deep (B|1, depth, L, D) prompts; expand batch 1 to B."""
        shape = tuple(prompts.shape)
        ok = prompts.dim() in (3, 4) and shape[0] in (1, batch) and shape[-1] == self.embed_dim
        if prompts.dim() == 4:
            ok = ok and shape[1] == self.depth
        if not ok:
            raise ValueError(
                f"prompts must be (B, L, {self.embed_dim}) or (B, {self.depth}, L, {self.embed_dim}) "
                f"with B = {batch} or 1, got {shape}"
            )
        return prompts.expand(batch, *shape[1:])
