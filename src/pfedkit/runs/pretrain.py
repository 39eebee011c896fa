"""Offline pretraining of the frozen ViT backbone, and the linear probe that judges it.

No ViT weights ship in any package this project can reach, so ``pfedkit pretrain`` trains one:
a `PromptedViT` preset plus a linear head, supervised, on a *source* dataset whose images are
disjoint from every federated client's. The backbone (head dropped) is saved in timm's key
layout as ``.safetensors`` under the user's cache folder, named by a hash of the recipe; the
same recipe is never trained twice. Checkpoints expect images scaled to [0, 1] with no
normalisation (``model.vit.normalize=none``).

Sources (``+`` joins several; each keeps its own classes, so the head has their sum):

==============  ===========================================================================
fashion-mnist   Fashion-MNIST (clothing, 28x28 grey, zero-padded to 32): no digit at all
syndigits       digits rendered by the machinery of digits-md's ``syndigits`` domain
                (`pfedkit.data.domains.font_digits`) from a seed stream of its own, so no
                image coincides with a digits-md image (checked by hashing, in the tests and
                at run time against the target pool)
any dataset     a registered dataset by name (``pfedkit list datasets``), e.g. cifar10
==============  ===========================================================================

A source that shares images with the target is refused before any work: by name (each
dataset's image families, e.g. ``mnist`` is inside ``digits-md``) and, once loaded, by
comparing image hashes with the target pool.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pfedkit.core.config import DataConfig, RunConfig, check_domain_names, default_data_root
from pfedkit.core.errors import ConfigError
from pfedkit.core.seeding import derive_seed, numpy_generator, torch_generator
from pfedkit.data.domains.font_digits import render_font_digits
from pfedkit.data.registry import load_source, source_names
from pfedkit.data.setup import build_federated_data
from pfedkit.engines.simulate import resolve_device
from pfedkit.models.vit import VIT_PRESETS, PromptedViT
from pfedkit.models.vit_checkpoint import load_timm_checkpoint

CODE_VERSION = 1
"""Part of every recipe hash: bump it when a change here alters what a recipe trains."""

GENERATED_SOURCES = ("syndigits",)
GENERATED_DEFAULT_SAMPLES = 60_000
"""Images a generated source renders when ``samples = 0`` (all) is asked for."""

_SYNDIGITS_STREAM = 0x70726574  # "pret": the pretraining renders' own SeedSequence entropy word
_PAD_GAP = 8  # images up to this many pixels smaller than the model are zero-padded, not resized

# Image families per dataset: two datasets may share images iff their families intersect.
# A dataset not listed is its own family. digits-md renders its syndigits from seed-0 streams.
IMAGE_FAMILIES: dict[str, frozenset[str]] = {
    "mnist": frozenset({"mnist"}),
    "digits": frozenset({"sklearn-digits"}),
    "digits-md": frozenset({"mnist", "sklearn-digits", "font-digits:digits-md"}),
    "fashion-mnist": frozenset({"fashion-mnist"}),
    "cifar10": frozenset({"cifar10"}),
    "cifar100": frozenset({"cifar100"}),
    "syndigits": frozenset({"font-digits:pretrain"}),
}


DEFAULT_TARGET = ("data.dataset=digits-md", "data.num_clients=20", "partition.scheme=domain-dirichlet",
                  "partition.alpha=0.5", "partition.alpha_domain=0.5", "partition.min_size=50")
"""Config overrides of the target when ``pfedkit pretrain`` gets no CONFIG (as configs/bpt_digits_md.yaml)."""


@dataclass(frozen=True)
class PretrainScale:
    """What ``--scale`` picks: preset, source, number of source images, epochs, learning rate."""

    preset: str
    source: str
    samples: int
    epochs: int
    lr: float


SCALES: dict[str, PretrainScale] = {
    # vit_cpu_tiny on 10k renders x 8 epochs: the best linear probe on digits-md of the sources
    # measured (docs/pretrain.md), about 5 min of training on one core.
    "cpu": PretrainScale("vit_cpu_tiny", "syndigits", 10_000, 8, 1e-3),
    # vit_cpu_small (D=192, 6 blocks, 64-wide heads), 70k Fashion-MNIST + 60k renders, 40 epochs.
    "gpu": PretrainScale("vit_cpu_small", "fashion-mnist+syndigits", 0, 40, 5e-4),
}


@dataclass(frozen=True)
class PretrainOptions:
    """One pretraining recipe, plus where and how to run it.

    The recipe fields (all but ``cache_dir``, ``data_root``, ``device``, ``threads`` and
    ``target``) determine the checkpoint's hash, hence its file name.

    Attributes:
        source: source name(s) joined by ``+`` (see the module docstring).
        preset: a key of ``VIT_PRESETS``; its full spec enters the hash.
        epochs: passes over the source images.
        samples: source images in all (split evenly over the ``+`` parts; a real dataset
            subsampled with the seed, a generated one rendered); 0 = all of each real dataset
            and ``GENERATED_DEFAULT_SAMPLES`` of each generated one.
        batch_size: images per step.
        lr: peak AdamW learning rate (linear warm-up over ``warmup_epochs``, cosine to 0).
        weight_decay: AdamW decay of the matrices (not of biases, norms and embeddings).
        warmup_epochs: epochs of linear warm-up (may be fractional).
        label_smoothing: cross-entropy label smoothing.
        shift: random translation of each image by up to this many pixels (0 = none).
        recolour: probability that an image is redrawn in random foreground/background colours
            (its luminance mapped from a random background to a random foreground colour).
        seed: seeds the subsample, the renders, the initial weights, the order and the shifts.
        cache_dir: folder of the checkpoints; empty = ``$PFEDKIT_CACHE/backbones`` or
            ``~/.cache/pfedkit/backbones``.
        data_root: where the source datasets are; empty = ``$PFEDKIT_DATA`` or the default.
        device: cpu, cuda, cuda:N or auto.
        threads: torch CPU threads while training (0 = leave torch's setting).
        target: the federated data the backbone is for; a source sharing images with it is
            refused. None = no check.
    """

    source: str = SCALES["cpu"].source
    preset: str = SCALES["cpu"].preset
    epochs: int = SCALES["cpu"].epochs
    samples: int = SCALES["cpu"].samples
    batch_size: int = 128
    lr: float = SCALES["cpu"].lr
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    shift: int = 2
    recolour: float = 0.0
    seed: int = 0
    cache_dir: str = ""
    data_root: str = ""
    device: str = "cpu"
    threads: int = 0
    target: DataConfig | None = field(default=None, compare=False)

    @classmethod
    def for_scale(cls, scale: str, **changes: object) -> PretrainOptions:
        """The options of ``SCALES[scale]`` with ``changes`` applied (None values ignored)."""
        if scale not in SCALES:
            raise ConfigError(f"--scale={scale!r} is not allowed; choose one of {', '.join(SCALES)}")
        s = SCALES[scale]
        base = cls(source=s.source, preset=s.preset, epochs=s.epochs, samples=s.samples, lr=s.lr)
        return dataclasses.replace(base, **{k: v for k, v in changes.items() if v is not None})

    def recipe(self) -> dict[str, object]:
        """Everything that decides the trained weights (JSON-serialisable)."""
        spec = dataclasses.asdict(VIT_PRESETS[self.preset])
        return {"code_version": CODE_VERSION, "preset": self.preset, "spec": spec,
                "source": self.source, "samples": self.samples, "epochs": self.epochs,
                "batch_size": self.batch_size, "lr": self.lr, "weight_decay": self.weight_decay,
                "warmup_epochs": self.warmup_epochs, "label_smoothing": self.label_smoothing,
                "shift": self.shift, "recolour": self.recolour, "seed": self.seed}

    def recipe_hash(self) -> str:
        """Hex SHA-256 of the canonical JSON of `recipe`."""
        return hashlib.sha256(json.dumps(self.recipe(), sort_keys=True).encode()).hexdigest()

    def checkpoint_path(self) -> Path:
        """``<cache_dir>/<preset>-<source>-<hash16>.safetensors``."""
        folder = Path(self.cache_dir).expanduser() if self.cache_dir else default_backbone_dir()
        return folder / f"{self.preset}-{self.source}-{self.recipe_hash()[:16]}.safetensors"


def default_backbone_dir() -> Path:
    """``$PFEDKIT_CACHE/backbones`` if the variable is set, else ``~/.cache/pfedkit/backbones``."""
    return Path(os.environ.get("PFEDKIT_CACHE", str(Path.home() / ".cache" / "pfedkit"))).expanduser() / "backbones"


def source_parts(source: str) -> list[str]:
    """``"a+b"`` -> ``["a", "b"]``; ConfigError for an empty, repeated or unknown part."""
    parts = [p.strip() for p in source.split("+")]
    known = sorted(set(source_names()) | set(GENERATED_SOURCES))
    names = [] if any(not p for p in parts) else parts
    check_domain_names(names, known, f"--source={source!r}", kind="source", empty="give source names joined by '+'")
    return parts


def families_of(dataset: str) -> frozenset[str]:
    """The image families of a dataset or source name (itself if not in `IMAGE_FAMILIES`)."""
    return IMAGE_FAMILIES.get(dataset, frozenset({dataset}))


def check_options(options: PretrainOptions) -> None:
    """Validate a recipe before any work: names, ranges, and no image family shared with the target.

    Raises:
        ConfigError: one line naming the option and what is allowed.
    """
    parts = source_parts(options.source)
    if options.preset not in VIT_PRESETS:
        raise ConfigError(f"--preset={options.preset!r} is not allowed; choose one of {', '.join(VIT_PRESETS)}")
    for name, value, lo in (("--epochs", options.epochs, 1), ("--samples", options.samples, 0),
                            ("batch_size", options.batch_size, 1), ("shift", options.shift, 0),
                            ("seed", options.seed, 0), ("--threads", options.threads, 0)):
        if value < lo:
            raise ConfigError(f"{name}={value} is out of range; allowed [{lo}, inf]")
    if 0 < options.samples < len(parts):
        raise ConfigError(f"--samples={options.samples} is fewer than one image per source part ({len(parts)})")
    if not (options.lr > 0 and options.weight_decay >= 0 and options.warmup_epochs >= 0
            and 0 <= options.label_smoothing < 1 and 0 <= options.recolour <= 1):
        raise ConfigError("lr must be > 0, weight_decay and warmup_epochs >= 0, label_smoothing in [0, 1), "
                          "recolour in [0, 1]")
    if importlib.util.find_spec("safetensors") is None:
        raise ConfigError("pretraining writes .safetensors checkpoints: pip install safetensors (or 'pfedkit[vit]')")
    if options.target is not None:
        target = options.target.dataset
        for part in parts:
            shared = families_of(part) & families_of(target)
            if shared:
                raise ConfigError(f"--source={options.source!r}: {part!r} shares images ({', '.join(sorted(shared))}) "
                                  f"with the target data.dataset={target!r}; pretrain on a disjoint source, "
                                  f"e.g. fashion-mnist or syndigits")


# --------------------------------------------------------------------------------------- source data


@dataclass(frozen=True)
class SourceData:
    """Pretraining images held as bytes.

    Attributes:
        x: (N, 3, S, S) uint8 images, S = the storage size (see `fit_images`).
        y: (N,) int64 labels in [0, num_classes); the parts of a ``+`` source are offset.
        num_classes: classes over all parts.
    """

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int


def render_syndigits(count: int, seed: int, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """``count`` font-rendered digits, labels cycling 0..9, from the pretraining stream of ``seed``.

    Returns:
        images (count, 3, size, size) uint8 and labels (count,) int64.
    """
    labels = np.arange(count, dtype=np.int64) % 10
    rng = np.random.default_rng(np.random.SeedSequence([_SYNDIGITS_STREAM, seed]))
    images = render_font_digits(labels, rng, size)
    return np.rint(images * 255.0).astype(np.uint8), labels


def fit_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 1|3, H, W) uint8 -> (N, 3, S, S) uint8: grey repeated to RGB; square images up to
    ``_PAD_GAP`` pixels smaller than ``size`` zero-padded to it (as digits-md pads MNIST); larger
    or much smaller ones resized to ``size`` (bilinear)."""
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x.contiguous()
    if h == w and 0 < size - h <= _PAD_GAP:
        top = (size - h) // 2
        return F.pad(x, (top, size - h - top, top, size - h - top))
    out = F.interpolate(x.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=h > size)
    return out.round().clamp(0, 255).to(torch.uint8)


def load_source_data(options: PretrainOptions, size: int) -> SourceData:
    """The images of ``options.source`` at storage size ``size``, subsampled / rendered as asked."""
    parts = source_parts(options.source)
    root = Path(options.data_root or default_data_root()).expanduser()
    share = [options.samples // len(parts) + (i < options.samples % len(parts)) for i in range(len(parts))]
    xs, ys, offset = [], [], 0
    for i, part in enumerate(parts):
        if part == "syndigits":
            images, labels = render_syndigits(share[i] or GENERATED_DEFAULT_SAMPLES, derive_seed(options.seed, 1))
            x, y, classes = torch.from_numpy(images), torch.from_numpy(labels), 10
        else:
            pool = load_source(part, root)
            keep = np.arange(len(pool))
            if 0 < share[i] < len(pool):
                keep = np.sort(numpy_generator(options.seed, 2, i).choice(len(pool), share[i], replace=False))
            keep_t = torch.as_tensor(keep)
            x = pool.x[keep_t].mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
            y, classes = pool.y[keep_t], pool.num_classes
        xs.append(fit_images(x, size))
        ys.append(y + offset)
        offset += classes
    return SourceData(torch.cat(xs), torch.cat(ys), offset)


def image_hashes(x: torch.Tensor) -> set[bytes]:
    """SHA-256 digests of images (N, C, H, W), float in [0, 1] (as bytes: rint(255 x)) or uint8;
    grey images are repeated to RGB first so they compare with RGB copies of themselves."""
    if x.dtype != torch.uint8:
        x = x.mul(255.0).round().clamp(0, 255).to(torch.uint8)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    arr = x.contiguous().numpy()
    shape = str(arr.shape[1:]).encode()
    return {hashlib.sha256(shape + img.tobytes()).digest() for img in arr}


def check_disjoint(source: SourceData, target: DataConfig) -> None:
    """Raise ConfigError if any source image equals an image of the target dataset (all of it,
    before subsampling; byte for byte at the dataset's size, after both are brought to RGB)."""
    pool = load_source(target.dataset, Path(target.root or default_data_root()).expanduser())
    if pool.x.shape[-2:] == source.x.shape[-2:]:
        shared = image_hashes(source.x) & image_hashes(pool.x)
        if shared:
            raise ConfigError(f"the pretraining source holds {len(shared)} image(s) of the target "
                              f"data.dataset={target.dataset!r}; pretrain on a disjoint source")


# ----------------------------------------------------------------------------------------- training


class _Classifier(nn.Module):
    """Backbone + linear head, for pretraining only (the head is not saved)."""

    def __init__(self, backbone: PromptedViT, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.embed_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def random_shift(x: torch.Tensor, pixels: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each image (B, C, H, W) by its own random offset in [-pixels, pixels]^2,
    repeating the border pixels into what comes in; offsets drawn from ``gen`` (on CPU)."""
    if pixels <= 0:
        return x
    b, c, h, w = x.shape
    padded = F.pad(x, (pixels, pixels, pixels, pixels), mode="replicate")
    dy = torch.randint(0, 2 * pixels + 1, (b,), generator=gen).to(x.device)
    dx = torch.randint(0, 2 * pixels + 1, (b,), generator=gen).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    return padded[torch.arange(b, device=x.device)[:, None, None, None],
                  torch.arange(c, device=x.device)[None, :, None, None], rows, cols]


def random_recolour(x: torch.Tensor, probability: float, gen: torch.Generator) -> torch.Tensor:
    """With ``probability`` per image, replace (B, 3, H, W) images in [0, 1] by
    ``bg + (fg - bg) * luminance`` with uniform random RGB colours fg, bg (drawn from ``gen``)."""
    if probability <= 0:
        return x
    b = x.shape[0]
    pick = (torch.rand(b, generator=gen) < probability).to(x.device)[:, None, None, None]
    fg, bg = (torch.rand(2, b, 3, 1, 1, generator=gen)).to(x.device)
    lum = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device)[:, None, None]).sum(1, keepdim=True)
    return torch.where(pick, bg + (fg - bg) * lum, x)


def _optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and n not in ("backbone.pos_embed",
                                                                                   "backbone.cls_token")]
    ids = {id(p) for p in decay}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": rest, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.999))


def _lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from ``peak`` to 0 at ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class EpochRecord:
    """One epoch of pretraining: seconds, mean loss and accuracy on the (augmented) batches."""

    epoch: int
    seconds: float
    loss: float
    accuracy: float


def train_backbone(data: SourceData, options: PretrainOptions,
                   on_epoch: Callable[[EpochRecord], None] | None = None) -> tuple[PromptedViT, list[EpochRecord]]:
    """Supervised training of a fresh ``options.preset`` + linear head on ``data``; returns the
    backbone (CPU, eval mode) and the per-epoch records. Deterministic for a given device and
    thread count."""
    device = resolve_device(options.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(options.seed, 3))
        model = _Classifier(PromptedViT.from_preset(options.preset), data.num_classes)
    model.to(device).train()
    opt = _optimizer(model, options.lr, options.weight_decay)
    n = len(data.y)
    steps_per_epoch = math.ceil(n / options.batch_size)
    total, warmup = steps_per_epoch * options.epochs, round(options.warmup_epochs * steps_per_epoch)
    gen = torch_generator(options.seed, 4)
    x_all, y_all = data.x.to(device), data.y.to(device)
    records, step = [], 0
    for epoch in range(1, options.epochs + 1):
        start = time.perf_counter()
        order = torch.randperm(n, generator=gen).to(device)
        loss_sum, correct = 0.0, 0
        for i in range(0, n, options.batch_size):
            idx = order[i:i + options.batch_size]
            x = random_shift(x_all[idx].float().div_(255.0), options.shift, gen)
            x = random_recolour(x, options.recolour, gen)
            y = y_all[idx]
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, total, warmup, options.lr)
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=options.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == y).sum())
        record = EpochRecord(epoch, time.perf_counter() - start, loss_sum / n, correct / n)
        records.append(record)
        if on_epoch is not None:
            on_epoch(record)
    return model.backbone.cpu().eval(), records


def save_backbone(backbone: PromptedViT, path: Path, metadata: dict[str, str]) -> None:
    """Write the backbone's state dict (timm keys) as safetensors atomically (tmp file + rename)."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}, str(tmp),
                  metadata={"format": "pt", **metadata})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def checkpoint_metadata(path: str | Path) -> dict[str, str]:
    """The safetensors header metadata of a checkpoint (``num_heads``, ``recipe``, ...)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def pretrain_backbone(options: PretrainOptions, log: Callable[[str], None] | None = None) -> Path:
    """Train (or reuse) the backbone of a recipe; returns the cached checkpoint's path.

    Order: validate the options (`check_options`, before any work) → if the recipe's file
    exists, return it (no training) → load the source → with ``options.target``, refuse any
    image shared with the target pool → train → write atomically.

    Args:
        options: the recipe and where to run it.
        log: receives one progress line per stage and per epoch.
    Raises:
        ConfigError: bad options, or a source that shares images with the target.
    """
    say = log or (lambda _msg: None)
    check_options(options)
    path = options.checkpoint_path()
    if path.is_file():
        say(f"pretrain: reusing {path} (same recipe)")
        return path
    previous_threads = torch.get_num_threads()
    if options.threads:
        torch.set_num_threads(options.threads)
    try:
        start = time.perf_counter()
        size = min(VIT_PRESETS[options.preset].img_size, 32)
        data = load_source_data(options, size)
        if options.target is not None:
            check_disjoint(data, options.target)
        say(f"pretrain: {options.preset} on {options.source}: {len(data.y)} images, {data.num_classes} classes, "
            f"{options.epochs} epochs, batch {options.batch_size}, lr {options.lr:g}, "
            f"{torch.get_num_threads()} threads, device {options.device} "
            f"(data ready in {time.perf_counter() - start:.1f} s)")

        def report(r: EpochRecord) -> None:
            say(f"epoch {r.epoch}/{options.epochs}: {r.seconds:.1f} s, loss {r.loss:.3f}, "
                f"train accuracy {100 * r.accuracy:.2f} %")

        backbone, records = train_backbone(data, options, report)
    finally:
        torch.set_num_threads(previous_threads)
    metadata = {"num_heads": str(VIT_PRESETS[options.preset].num_heads), "preset": options.preset,
                "recipe": json.dumps(options.recipe(), sort_keys=True), "recipe_sha256": options.recipe_hash(),
                "train_accuracy": f"{records[-1].accuracy:.4f}", "num_images": str(len(data.y)),
                "seconds_per_epoch": f"{sum(r.seconds for r in records) / len(records):.1f}",
                "threads": str(options.threads or previous_threads), "device": options.device,
                "input": "RGB in [0, 1], no normalisation (model.vit.normalize=none)"}
    save_backbone(backbone, path, metadata)
    say(f"pretrain: wrote {path}")
    return path


# ------------------------------------------------------------------------------------- linear probe


@dataclass(frozen=True)
class ProbeResult:
    """A frozen-feature linear probe on the target federation's pooled splits.

    Attributes:
        test_accuracy: accuracy on all clients' test splits pooled.
        val_accuracy: accuracy on the pooled val splits at the chosen C (nan without val data).
        C: inverse L2 strength picked on the val splits.
        num_train, num_test: pooled sizes.
    """

    test_accuracy: float
    val_accuracy: float
    C: float
    num_train: int
    num_test: int


PROBE_C = (0.01, 0.1, 1.0, 10.0)


@torch.no_grad()
def backbone_features(backbone: PromptedViT, x: torch.Tensor, device: torch.device,
                      batch_size: int = 256) -> np.ndarray:
    """Prompt-free [CLS] features of images (N, C, H, W) in [0, 1] -> (N, D) float64."""
    backbone.to(device).eval()
    out = [backbone(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out).double().numpy() if out else np.zeros((0, backbone.embed_dim))


def linear_probe(backbone: str | Path | PromptedViT, target: RunConfig, device: str = "cpu") -> ProbeResult:
    """Fit a multinomial logistic regression on frozen features of the target federation.

    The federation is built from ``target`` (data, partition, seed) exactly as a run builds it;
    features are the backbone's prompt-free [CLS] on raw [0, 1] images (resized by the
    backbone as in a run). Standardised features; C chosen from `PROBE_C` on the pooled val
    splits (never on test); the accuracy reported is on the pooled test splits. Features are
    computed with torch's current thread count; the regression runs on one BLAS thread.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    model = backbone if isinstance(backbone, PromptedViT) else load_timm_checkpoint(backbone)
    fed = build_federated_data(target.data, target.partition, target.seed)
    dev = resolve_device(device)
    feats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in ("train", "val", "test"):
        xs = [c.split(split)[0] for c in fed.clients]
        ys = [c.split(split)[1] for c in fed.clients]
        feats[split] = (backbone_features(model, torch.cat(xs), dev), torch.cat(ys).numpy())
    scaler = StandardScaler().fit(feats["train"][0])
    z = {k: (scaler.transform(v[0]), v[1]) for k, v in feats.items()}

    def fit(c: float) -> LogisticRegression:
        # one BLAS thread: this problem is small, and OpenBLAS threads on a busy machine made it 10x slower
        with threadpool_limits(1):
            return LogisticRegression(C=c, max_iter=2000).fit(*z["train"])

    if len(z["val"][1]):
        scored = [(clf.score(*z["val"]), c, clf) for c in PROBE_C for clf in [fit(c)]]
        val_acc, c_best, clf = max(scored, key=lambda t: (t[0], -t[1]))
    else:
        val_acc, c_best, clf = float("nan"), 1.0, fit(1.0)
    return ProbeResult(float(clf.score(*z["test"])), float(val_acc), c_best, len(z["train"][1]), len(z["test"][1]))


def linear_probe_accuracy(checkpoint: str | Path | PromptedViT, target_cfg: RunConfig, device: str = "cpu") -> float:
    """Pooled test accuracy of `linear_probe` (frozen features, logistic regression)."""
    return linear_probe(checkpoint, target_cfg, device).test_accuracy


def random_backbone(preset: str, seed: int = 0) -> PromptedViT:
    """A randomly initialised backbone of ``preset`` (the linear probe's floor), seeded."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, 3))
        return PromptedViT.from_preset(preset)
