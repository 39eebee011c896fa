"""The frozen-backbone family: the backbone never travels, never trains, and e(x) is cached."""

from __future__ import annotations

import pytest
import torch
from support import SMALL, tiny_fed

from pfedkit.algorithms.toolkit.frozen_features import feature_client, frozen_features
from pfedkit.core.config import load_config
from pfedkit.core.errors import ConfigError
from pfedkit.models import build_model
from pfedkit.models.prompted import PromptedClassifier, ViTOptions

VIT = ("model.name=vit", "model.vit.preset=vit_micro", "model.vit.prompts=3")


def vit(**kw) -> PromptedClassifier:
    torch.manual_seed(0)
    return build_model("vit", (1, 8, 8), 10, ViTOptions(preset="vit_micro", **kw))


def test_only_prompt_and_head_are_state_and_to_moves_the_backbone():
    model = vit(prompts=3)
    assert list(model.state_dict()) == ["body.tokens", "head.weight", "head.bias"]
    assert sum(p.numel() for p in model.parameters()) == 3 * 32 + 32 * 10 + 10
    model.double()
    assert next(model.backbone.parameters()).dtype == torch.float64
    assert not any(p.requires_grad for p in model.backbone.parameters())
    deep = vit(prompts=2, deep=True)
    assert deep.body.tokens.shape == (2, 2, 32) and deep(torch.rand(4, 1, 8, 8)).shape == (4, 10)
    assert list(vit(prompts=0).state_dict()) == ["head.weight", "head.bias"]


def test_cached_features_equal_a_fresh_pass_and_are_computed_once():
    model, fed = vit(prompts=3), tiny_fed(load_config(None, list(SMALL)))
    client = fed.clients[1]
    cached = frozen_features(model, client, "train")
    fresh = model.backbone(client.x_train)
    assert torch.equal(cached, fresh)
    assert frozen_features(model, client, "train") is cached  # second call: the cache
    other = vit(prompts=3)
    with torch.no_grad():
        next(other.backbone.parameters()).add_(1.0)
    other.fingerprint = "changed"
    assert not torch.equal(frozen_features(other, client, "train"), cached)  # keyed by the backbone
    view = feature_client(model, client)
    assert view.x_test.shape == (client.x_test.shape[0], 32) and view.y_test is client.y_test


def test_a_missing_checkpoint_fails_at_config_load():
    with pytest.raises(ConfigError, match="model.vit.checkpoint='/nope.pth': no such file"):
        load_config(None, ["model.name=vit", "model.vit.checkpoint=/nope.pth"])
