"""FedProto: only class prototypes travel; the local loss pulls features to global prototypes;
prediction by the nearest global prototype."""

import math

import pytest
import torch
from support import SMALL, ctx, make_algorithm, run_sim, small_federation, tiny_config

from pfedkit.algorithms.methods.fedproto import prototype_classifier
from pfedkit.algorithms.toolkit import prototypes as P
from pfedkit.algorithms.toolkit.training import features_in_batches


@pytest.fixture(scope="module")
def setup():
    return small_federation()


def test_upload_is_class_prototypes_only(setup):
    cfg, fed = setup
    algo = make_algorithm("fedproto", fed, cfg=cfg)
    c = fed.clients[0]
    up = algo.local_update(algo.broadcast(algo.init_server(), 1), algo.init_client(c), c, ctx())
    weights = set(algo.model.state_dict())
    assert set(up.upload) == {P.MEANS, P.COUNTS} and not set(up.upload) & weights
    d, n_cls = algo.model.feature_dim, fed.num_classes
    assert up.upload[P.MEANS].shape == (n_cls, d) and up.upload[P.COUNTS].shape == (n_cls,)
    assert torch.equal(up.upload[P.COUNTS], c.class_counts("train").float())
    # the whole model stays with the client, and the prototypes are its class-mean features
    assert set(up.state) == weights
    algo.load(up.state)
    z = features_in_batches(algo.model, c.x_train)
    for k in range(n_cls):
        expected = z[c.y_train == k].mean(0) if (c.y_train == k).any() else torch.zeros(d)
        assert torch.allclose(up.upload[P.MEANS][k], expected, atol=1e-5)


def test_server_averages_prototypes_per_class():
    m1, m2 = torch.tensor([[1.0, 0.0], [2.0, 2.0], [0.0, 0.0]]), torch.tensor([[3.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    n1, n2 = torch.tensor([1.0, 4.0, 0.0]), torch.tensor([3.0, 0.0, 0.0])
    prev, prev_av = torch.full((3, 2), 7.0), torch.tensor([0.0, 0.0, 1.0])
    means, av = P.aggregate_prototypes([m1, m2], [n1, n2], prev, prev_av, "samples")
    assert torch.allclose(means, torch.tensor([[2.5, 0.0], [2.0, 2.0], [7.0, 7.0]]))
    assert torch.equal(av, torch.tensor([1.0, 1.0, 1.0]))
    means, _ = P.aggregate_prototypes([m1, m2], [n1, n2], prev, prev_av, "clients")
    assert torch.allclose(means[0], torch.tensor([2.0, 0.0]))


def test_prototype_term_pulls_features_to_global_prototypes(setup):
    _, fed = setup
    cfg = tiny_config(*SMALL, "train.local_epochs=3")
    c = fed.clients[1]
    targets = torch.rand(fed.num_classes, cfg.model.options_for("cnn").feature_dim, generator=torch.Generator().manual_seed(3))
    bcast = {P.MEANS: targets, P.AVAILABLE: torch.ones(fed.num_classes)}
    dist = {}
    for lam in (0.0, 20.0):
        algo = make_algorithm("fedproto", fed, {"lam": lam}, cfg=cfg)
        up = algo.local_update(bcast, algo.init_client(c), c, ctx())
        algo.load(up.state)
        z = features_in_batches(algo.model, c.x_train)
        dist[lam] = float(((z - targets[c.y_train]) ** 2).mean())
    assert dist[20.0] < 0.5 * dist[0.0]


def test_prediction_is_nearest_global_prototype_among_local_classes(setup):
    cfg, fed = setup
    algo = make_algorithm("fedproto", fed, cfg=cfg)
    c = fed.clients[2]
    protos = torch.rand(fed.num_classes, cfg.model.options_for("cnn").feature_dim, generator=torch.Generator().manual_seed(5))
    bcast = {P.MEANS: protos, P.AVAILABLE: torch.ones(fed.num_classes)}
    pred = algo.personal_predictor(bcast, algo.init_client(c), c, ctx())
    z = features_in_batches(algo.model, c.x_test)
    d2 = torch.cdist(z, protos) ** 2
    d2[:, c.class_counts("train") == 0] = float("inf")
    assert torch.equal(pred(c.x_test).argmax(1), d2.argmin(1))
    # a class without a global prototype is never predicted
    allowed = torch.ones(fed.num_classes, dtype=torch.bool)
    allowed[d2.argmin(1)[0]] = False
    out = prototype_classifier(algo.model, protos, allowed)(c.x_test)
    assert not (out.argmax(1) == d2.argmin(1)[0]).any()


def test_runs_two_rounds(setup):
    cfg, fed = setup
    res = run_sim("fedproto", fed, rounds=2, cfg=cfg)
    n_cls, d = fed.num_classes, cfg.model.options_for("cnn").feature_dim
    for rec in res.history:
        assert math.isfinite(rec["train_loss"])
        assert rec["bytes_up"] == len(rec["clients"]) * 4 * (n_cls * d + n_cls)
    assert res.server[P.AVAILABLE].sum() > 0
    assert math.isfinite(res.summary["last"]["test"]["mean"])
