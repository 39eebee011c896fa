"""Prompt methods on a frozen ViT: what they send, what they keep, and that the backbone stays put."""

from __future__ import annotations

import pytest
import torch
from support import SMALL, tiny_config

from pfedkit.core.config import load_config
from pfedkit.core.errors import ConfigError
from pfedkit.runs.experiment import seeded_model, simulate_config

VIT = ("model.name=vit", "model.vit.preset=vit_micro", "model.vit.prompts=3", "train.lr=0.05")
PROMPTED = ["fedvpt", "fedvpt_lh", "local_vpt", "pfedpg", "pfedbayespt"]


@pytest.mark.parametrize("algo", PROMPTED)
def test_prompt_methods_train_without_touching_or_sending_the_backbone(algo, monkeypatch):
    cfg = tiny_config(*SMALL, *VIT, f"algorithm={algo}", "hp.pfedbayespt.K=2", "hp.pfedbayespt.samples=2")
    backbone = seeded_model(cfg, (1, 8, 8), 10).backbone
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    seen_models = []
    import pfedkit.runs.experiment as experiment

    original = experiment.seeded_model
    monkeypatch.setattr(experiment, "seeded_model", lambda *a: seen_models.append(original(*a)) or seen_models[-1])
    result = simulate_config(cfg, progress=False)
    model = seen_models[0]
    for k, v in model.backbone.state_dict().items():  # bit-identical after training
        assert torch.equal(v, before[k]), k
    for key in result.server:  # no backbone tensor in the server state (what is broadcast)
        assert not any(key.endswith(b) for b in before), key
    if algo == "fedvpt":  # bytes per round: exactly prompt (3 x 32) + head (32 x 10 + 10), float32, 4 clients
        assert {r["bytes_up"] for r in result.history} == {4 * (3 * 32 + 330) * 4}
    acc = result.summary["last"]["test"]["mean"]
    assert 0.0 <= acc <= 1.0


def test_pfedbayespt_shares_the_generator_and_predicts_normalised_probabilities():
    from support import ctx, make_algorithm, tiny_fed

    from pfedkit.algorithms.methods.pfedbayespt import GEN

    for head, predict in (("shared", "bayes"), ("local", "mean"), ("shared", "single")):
        cfg = tiny_config(*SMALL, *VIT, f"hp.pfedbayespt.head={head}", f"hp.pfedbayespt.predict={predict}",
                          "hp.pfedbayespt.K=2", "hp.pfedbayespt.samples=3")
        fed = tiny_fed(cfg)
        algo = make_algorithm("pfedbayespt", fed, {"head": head, "predict": predict, "K": 2, "samples": 3}, cfg)
        server = algo.init_server()
        assert all(k.startswith(GEN) or (head == "shared" and k.startswith("head.")) for k in server)
        assert any(k.startswith(GEN + "mixing.") for k in server) and GEN + "prior_mean" in server
        client = fed.clients[0]
        state = algo.init_client(client)
        assert set(state) == ({"head.weight", "head.bias"} if head == "local" else set())
        update = algo.local_update(algo.broadcast(server, 1), state, client, ctx(1, 0))
        changed = [k for k in server if not torch.equal(server[k], update.upload.get(k, server[k]))]
        assert any(k.startswith(GEN) for k in changed)  # the generator trained
        predict_fn = algo.personal_predictor(server, update.state, client, ctx(1, 0))
        log_p = predict_fn(client.x_test)
        assert torch.allclose(log_p.exp().sum(1), torch.ones(len(client.x_test)), atol=1e-5)


def test_prompt_methods_refuse_other_models_before_any_work(tmp_path):
    from pfedkit.cli.main import main

    out = tmp_path / "out"
    assert main(["run", "algorithm=pfedbayespt", f"output={out}", "--quiet"]) == 2
    assert not out.exists()
    with pytest.raises(ConfigError):
        from support import make_algorithm, tiny_fed

        make_algorithm("fedvpt", tiny_fed())


def test_all_picks_the_methods_of_the_model():
    from pfedkit.algorithms.registry import algorithms_for_model

    cnn = algorithms_for_model("cnn", load_config(None).model.options_for("cnn"))
    assert "fedavg" in cnn and "pfedbayespt" not in cnn and "linear_probe" not in cnn
    vit = load_config(None, list(VIT)).model
    assert {"fedvpt", "pfedbayespt", "pfedpg", "fedavg"} <= set(algorithms_for_model("vit", vit.options_for("vit")))
    probe = load_config(None, ["model.name=vit", "model.vit.prompts=0"]).model
    names = algorithms_for_model("vit", probe.options_for("vit"))
    assert "linear_probe" in names and "fedvpt" not in names


def test_head_methods_run_on_cached_frozen_features():
    for algo in ("linear_probe", "local_probe", "fedrep", "pfedfda", "pfedgm"):
        cfg = tiny_config(*SMALL, "model.name=vit", "model.vit.preset=vit_micro", "model.vit.prompts=0",
                          f"algorithm={algo}")
        result = simulate_config(cfg, progress=False)
        assert 0.0 <= result.summary["last"]["test"]["mean"] <= 1.0
        assert not any(k.startswith("body.") for k in result.server), algo  # the identity body has no state
