"""Import timm's VisionTransformer for reference tests without torchvision.

timm 1.0.31 imports a few torchvision names at import time (none of which a ViT uses), and
PyPI's torchvision does not import beside the project's CPU torch. When torchvision is
missing or broken, this module puts stand-ins for exactly those names into ``sys.modules``
while timm is imported, then removes them again, so nothing else in the test session sees a
fake torchvision. Install timm with ``pip install --no-deps timm`` so pip does not pull
torchvision (and a CUDA torch) in.
"""

from __future__ import annotations

import enum
import importlib
import importlib.util
import sys
import types
from typing import Any

import pytest


class _Unavailable:
    """Stand-in for a torchvision class; instantiating it is an error."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"{type(self).__name__} comes from a torchvision stand-in (tests/timm_shim.py)")


def _stub_modules() -> dict[str, types.ModuleType]:
    """The torchvision modules timm 1.0.31 imports unconditionally, with the names it takes."""

    def module(name: str, **attrs: Any) -> types.ModuleType:
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        return mod

    def cls(name: str, base: type = _Unavailable) -> type:
        return type(name, (base,), {})

    interpolation = enum.Enum(
        "InterpolationMode",
        {m: m.lower() for m in ("NEAREST", "BILINEAR", "BICUBIC", "BOX", "HAMMING", "LANCZOS")},
    )
    functional = module("torchvision.transforms.functional", InterpolationMode=interpolation)
    transforms = module("torchvision.transforms", ToTensor=cls("ToTensor"), functional=functional)
    misc = module("torchvision.ops.misc", FrozenBatchNorm2d=cls("FrozenBatchNorm2d"))
    ops = module("torchvision.ops", misc=misc)
    datasets = module(
        "torchvision.datasets",
        **{n: cls(n) for n in ("CIFAR10", "CIFAR100", "MNIST", "KMNIST", "FashionMNIST", "ImageFolder")},
    )
    root = module("torchvision", transforms=transforms, ops=ops, datasets=datasets, __version__="0.0+stub")
    return {m.__name__: m for m in (root, transforms, functional, ops, misc, datasets)}


def _torchvision_works() -> bool:
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        importlib.import_module("torchvision")
        return True
    except Exception:  # e.g. a CUDA torchvision beside a CPU torch: "operator torchvision::nms does not exist"
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        return False


def timm_vision_transformer() -> type:
    """timm's ``VisionTransformer`` class; skips the calling test when timm is not installed."""
    if "timm" not in sys.modules:
        if importlib.util.find_spec("timm") is None:
            pytest.skip("timm is not installed (pip install --no-deps timm)")
        if not _torchvision_works():
            stubs = _stub_modules()
            sys.modules.update(stubs)
            try:
                importlib.import_module("timm")
            finally:
                for name in stubs:
                    sys.modules.pop(name, None)
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer
