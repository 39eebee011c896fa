"""FedBN: normalisation layers (weights and running statistics) never leave the client."""

import math

import pytest
import torch
from support import SMALL, ctx, make_algorithm, run_sim, tiny_config, tiny_fed

from pfedkit.algorithms.methods.fedbn import norm_keys


@pytest.fixture(scope="module")
def setup():
    cfg = tiny_config(*SMALL, "model.cnn.norm=batch")
    return cfg, tiny_fed(cfg)


def test_norm_keys_are_found_from_the_model(setup):
    cfg, fed = setup
    algo = make_algorithm("fedbn", fed, cfg=cfg)
    keys = norm_keys(algo.model, (torch.nn.BatchNorm2d,))
    assert keys and any(k.endswith("running_mean") for k in keys)
    assert algo.personal == keys


def test_never_uploads_norm_keys_and_clients_keep_their_statistics(setup):
    cfg, fed = setup
    algo = make_algorithm("fedbn", fed, cfg=cfg)
    norm = set(algo.personal)
    server = algo.init_server()
    assert not norm & set(server)
    up = algo.local_update(algo.broadcast(server, 1), algo.init_client(fed.clients[0]), fed.clients[0], ctx())
    assert not norm & set(up.upload) and set(up.state) == norm
    assert set(up.upload) | norm == set(algo.model.state_dict())

    res = run_sim("fedbn", fed, rounds=2, cfg=cfg)
    assert not norm & set(res.server)
    for key in (k for k in norm if k.endswith("running_mean")):
        assert not torch.allclose(res.client_states[0][key], res.client_states[1][key])
    assert all(math.isfinite(r["train_loss"]) for r in res.history)
    assert math.isfinite(res.summary["last"]["test"]["mean"])


def test_without_norm_layers_it_is_fedavg():
    cfg = tiny_config(*SMALL)
    fed = tiny_fed(cfg)
    fedbn, fedavg = make_algorithm("fedbn", fed, cfg=cfg), make_algorithm("fedavg", fed, cfg=cfg)
    assert fedbn.personal == []
    server = fedbn.init_server()
    a = fedbn.local_update(fedbn.broadcast(server, 1), fedbn.init_client(fed.clients[0]), fed.clients[0], ctx())
    b = fedavg.local_update(fedavg.broadcast(fedavg.init_server(), 1), {}, fed.clients[0], ctx())
    assert set(a.upload) == set(b.upload)
    assert all(torch.equal(a.upload[k], b.upload[k]) for k in a.upload)
