"""Test settings for the statistics tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    """Run each test single-threaded: its tensors are tiny, and on a loaded shared machine
    intra-op threads spin-wait for a core (a 5x17 index_add_ took 0.2 s with 2 threads,
    10 us with 1). The previous setting is restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
