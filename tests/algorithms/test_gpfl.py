"""GPFL: the CoV splits one feature into a global and a personalized one; body, GCE and CoV are
uploaded, the head (reading the personalized feature) stays with the client."""

import math

import pytest
import torch
from support import ctx, make_algorithm, run_sim, small_federation

from pfedkit.algorithms.methods.gpfl import PREFIX, angle_softmax_loss, conditional_inputs


@pytest.fixture(scope="module")
def setup():
    return small_federation()


def test_conditional_inputs_are_class_and_frequency_weighted_embeddings():
    e = torch.tensor([[1.0, 0.0], [0.0, 2.0], [4.0, 4.0]])
    g, p = conditional_inputs(e, torch.tensor([3, 1, 0]))
    assert torch.allclose(g, torch.tensor([5.0 / 3, 2.0]))
    assert torch.allclose(p, torch.tensor([0.75, 0.5]))


def test_angle_loss_prefers_features_aligned_with_their_class_embedding():
    e = torch.eye(3)
    y = torch.tensor([0, 1, 2])
    assert angle_softmax_loss(e * 5.0, y, e) < angle_softmax_loss(e.roll(1, 0), y, e)


def test_global_and_personal_parts(setup):
    cfg, fed = setup
    algo = make_algorithm("gpfl", fed, cfg=cfg)
    c = fed.clients[0]
    server, state = algo.init_server(), algo.init_client(c)
    body, head = set(algo.keys("body")), set(algo.keys("head"))
    extra = {k for k in server if k.startswith(PREFIX)}
    assert {PREFIX + "gce.weight"} <= extra and any(k.startswith(PREFIX + "cov.") for k in extra)
    assert server[PREFIX + "gce.weight"].shape == (fed.num_classes, cfg.model.options_for("cnn").feature_dim)
    up = algo.local_update(algo.broadcast(server, 1), state, c, ctx())
    # shared and uploaded: body + GCE + CoV; personal: the head only
    assert set(up.upload) == body | extra and not set(up.upload) & head
    assert set(up.state) == head
    for part in (body | extra, head):
        before = server if part is not head else state
        after = up.upload if part is not head else up.state
        assert any(not torch.equal(before[k], after[k]) for k in part)


def test_head_reads_the_personalized_feature(setup):
    cfg, fed = setup
    algo = make_algorithm("gpfl", fed, cfg=cfg)
    c = fed.clients[1]
    server = algo.init_server()
    up = algo.local_update(algo.broadcast(server, 1), algo.init_client(c), c, ctx())
    bcast = {**server, **up.upload}
    pred = algo.personal_predictor(bcast, up.state, c, ctx(2))
    g, p = conditional_inputs(bcast[PREFIX + "gce.weight"], c.class_counts("train"))
    cov = algo.extra["cov"]
    with torch.no_grad():
        f = algo.model.features(c.x_test)
        f_p, f_g = cov(f, p), cov(f, g)
        assert torch.allclose(pred(c.x_test), algo.model.head(f_p), atol=1e-6)
        # a label-skewed client's personalized feature differs from the global one
        assert not torch.allclose(f_p, f_g)
        # and the prediction depends on the client's label distribution
        uniform = conditional_inputs(bcast[PREFIX + "gce.weight"], torch.ones(fed.num_classes))[1]
        assert not torch.allclose(algo.model.head(cov(f, uniform)), pred(c.x_test))


def test_runs_two_rounds(setup):
    cfg, fed = setup
    res = run_sim("gpfl", fed, rounds=2, cfg=cfg)
    assert all(math.isfinite(r["train_loss"]) for r in res.history)
    assert math.isfinite(res.summary["last"]["test"]["mean"])
    key = make_algorithm("gpfl", fed, cfg=cfg).keys("head")[0]
    assert not torch.allclose(res.client_states[0][key], res.client_states[1][key])
