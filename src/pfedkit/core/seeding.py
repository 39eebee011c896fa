"""Seeds derived from (run seed, round, client): every round's randomness is reproducible on its own."""

from __future__ import annotations

from typing import Callable, TypeVar

import numpy as np
import torch

T = TypeVar("T")


def derive_seed(*keys: int) -> int:
    """A 63-bit seed determined by the integer keys (e.g. run seed, round, client id)."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def torch_generator(*keys: int) -> torch.Generator:
    """A CPU torch.Generator seeded from the keys."""
    gen = torch.Generator()
    gen.manual_seed(derive_seed(*keys))
    return gen


def numpy_generator(*keys: int) -> np.random.Generator:
    """A numpy Generator seeded from the keys."""
    return np.random.default_rng(derive_seed(*keys))


def built_with_seed(seed: int, build: Callable[[], T]) -> T:
    """``build()`` with torch's CPU RNG seeded by ``seed`` and restored afterwards, so what it
    initialises depends on ``seed`` alone and the global RNG is untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()
