"""Shared pytest set-up: make ``tests/support.py`` importable from every test folder."""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
torch.set_num_threads(min(2, torch.get_num_threads()))
