"""The frozen-feature cache: e(x), the prompt-free [CLS] of a frozen backbone, computed once per
client and split and reused by every round and every method that runs on the same client data.

Keyed by the backbone's weight fingerprint, so two runs with different backbones never share
features, and by the split. Computed in eval mode, without augmentation or gradient.
"""

from __future__ import annotations

import dataclasses

import torch

from pfedkit.algorithms.toolkit.training import predict_in_batches
from pfedkit.data.client_data import ClientData
from pfedkit.models.prompted import PromptedClassifier

SPLITS = ("train", "val", "test")


def frozen_features(model: PromptedClassifier, data: ClientData, split: str) -> torch.Tensor:
    """e(x) of ``data``'s ``split``: (n, D) float32 on the data's device, cached in ``data.cache``."""
    key = ("frozen", model.fingerprint, split)
    if key not in data.cache:
        x = data.split(split)[0]
        device = next(iter(model.head.parameters())).device
        data.cache[key] = predict_in_batches(model.frozen_features, x.to(device), batch_size=256).to(x.device)
    return data.cache[key]


def feature_client(model: PromptedClassifier, data: ClientData) -> ClientData:
    """A view of ``data`` whose inputs are e(x) (n, D) instead of images: what a method runs on
    when the backbone is frozen and unprompted (a linear probe, FedRep-style local heads,
    pFedFDA or pFedGM on frozen features). Labels, domains and meta are shared, not copied."""
    z = {split: frozen_features(model, data, split) for split in SPLITS}
    return dataclasses.replace(data, x_train=z["train"], x_val=z["val"], x_test=z["test"], cache={})
