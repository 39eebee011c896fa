"""Shared pytest set-up: make ``tests/support.py`` importable from every test folder."""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
torch.set_num_threads(1)  # tiny models: one thread is faster and immune to a busy machine
