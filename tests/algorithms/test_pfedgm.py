"""pFedGM as an algorithm: protocol, payloads, fusion modes, filter, edge cases, ablations.

The statistics themselves (sufficient statistics, generator moments, Kalman formulas, heads)
are tested in ``tests/stats``; these tests check how the algorithm wires them together.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from support import (
    SMALL,
    ctx,
    make_algorithm,
    max_abs_diff,
    run_sim,
    small_federation,
    stop_after_round,
    tiny_config,
    tiny_fed,
)

import pfedkit.algorithms.methods.pfedgm as gm
from pfedkit.algorithms.toolkit.training import features_in_batches
from pfedkit.core.config import load_config
from pfedkit.core.errors import ConfigError
from pfedkit.core.payload import weighted_average
from pfedkit.data.client_data import ClientData
from pfedkit.engines.callbacks import Checkpointer
from pfedkit.engines.simulate import SimulationSettings, Simulator
from pfedkit.stats import ClassStats, GlobalPrior, class_stats, merge

STAT_KEYS = {gm.STATS + "counts", gm.STATS + "means", gm.STATS + "scatter"}


@pytest.fixture(autouse=True)
def single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def setup():
    return small_federation()


def warm(algo, fed, clients=None):
    """Run round 0 (statistics only) over ``clients`` (default all); return (server, uploads)."""
    server = algo.init_server()
    bcast = algo.broadcast(server, 0)
    ups = [algo.local_update(bcast, algo.init_client(c), c, ctx(0, c.client_id))
           for c in (clients if clients is not None else fed.clients)]
    return algo.aggregate(server, ups, 0), ups


def subset(client: ClientData, keep: torch.Tensor) -> ClientData:
    """A copy of ``client`` whose training split keeps only the samples where ``keep`` is True."""
    return dataclasses.replace(client, x_train=client.x_train[keep], y_train=client.y_train[keep])


def without_class(client: ClientData, c: int) -> ClientData:
    return subset(client, client.y_train != c)


# ----- round 0 and payloads -------------------------------------------------------------------
def test_round0_trains_nothing_and_fills_the_filter(setup):
    cfg, fed = setup
    algo = make_algorithm("pfedgm", fed, cfg=cfg)
    server = algo.init_server()
    body = algo.keys("body")
    before = algo.snapshot(body)
    bcast = algo.broadcast(server, 0)
    assert set(bcast) == set(body)  # round 0 sends the body only
    ups = [algo.local_update(bcast, {}, c, ctx(0, c.client_id)) for c in fed.clients]
    assert max_abs_diff(before, algo.snapshot(body)) == 0.0
    assert all(set(u.upload) == STAT_KEYS for u in ups)
    assert not bool(algo.filter_state(server).initialized.any())
    new = algo.aggregate(server, ups, 0)
    assert max_abs_diff({k: server[k] for k in body}, {k: new[k] for k in body}) == 0.0
    state = algo.filter_state(new)
    union = merge([ClassStats.from_payload(u.upload, gm.STATS) for u in ups])
    assert torch.equal(state.initialized, union.counts > 0)
    # tau = 1: the first filtered means are the pooled (sample-weighted) class means
    torch.testing.assert_close(state.means, union.means)
    # the navigator starts at those means, and the first bank is there
    torch.testing.assert_close(new[gm.ANCHORS], union.means.float())
    assert new[gm.BANK_Z].shape == (int(state.initialized.sum()) * algo.hp.bank_size, algo.model.feature_dim)


@pytest.mark.parametrize("reanchor", [False, True])
def test_navigator_after_a_round_is_the_clients_average_or_the_global_prior(setup, reanchor):
    """After round 1 the server's navigator is the FedAvg of the trained ones, or with
    ``navigator_reanchor`` the one `initial_navigator` builds from the new global prior."""
    cfg, fed = setup
    algo = make_algorithm("pfedgm", fed, hp={"navigator_reanchor": reanchor}, cfg=cfg)
    server, _ = warm(algo, fed)
    bcast = algo.broadcast(server, 1)
    ups = [algo.local_update(bcast, algo.init_client(c), c, ctx(1, c.client_id)) for c in fed.clients]
    new = algo.aggregate(server, ups, 1)
    nav = (gm.ANCHORS, gm.LOG_SCALE)
    averaged = weighted_average([{k: u.upload[k] for k in nav} for u in ups], [u.weight for u in ups])
    anchors, log_scale = gm.initial_navigator(algo.filter_state(new).to_prior())
    from_prior = {gm.ANCHORS: anchors, gm.LOG_SCALE: log_scale}
    assert max_abs_diff(averaged, from_prior) > 1e-3
    expected = from_prior if reanchor else averaged
    for k in nav:
        torch.testing.assert_close(new[k], expected[k])


def test_upload_has_the_spec_keys_and_broadcast_no_client_statistics(setup):
    cfg, fed = setup
    algo = make_algorithm("pfedgm", fed, cfg=cfg)
    server, ups0 = warm(algo, fed)
    bcast = algo.broadcast(server, 1)
    body = set(algo.keys("body"))
    prior_keys = {gm.PRIOR + k for k in ("means", "cov", "spread", "class_prior", "num_clients", "class_counts",
                                         "dof")}
    assert set(bcast) == body | {gm.ANCHORS, gm.LOG_SCALE, gm.BANK_Z, gm.BANK_Y} | prior_keys
    up = algo.local_update(bcast, {}, fed.clients[0], ctx(1, 0))
    assert set(up.upload) == body | {gm.ANCHORS, gm.LOG_SCALE} | STAT_KEYS
    # no client's own statistics (means, counts, scatter) travel to anybody else
    for u in ups0:
        for key in STAT_KEYS:
            assert not any(v.shape == u.upload[key].shape and torch.equal(v, u.upload[key].to(v.dtype))
                           for v in bcast.values())
        own = u.upload[gm.STATS + "means"][u.upload[gm.STATS + "counts"] > 0]
        bank = bcast[gm.BANK_Z].to(torch.float64)
        assert not any(torch.isclose(bank, row).all(1).any() for row in own)
    # the bank: B virtual features of every class the prior knows
    counts = torch.bincount(bcast[gm.BANK_Y], minlength=fed.num_classes)
    avail = bcast[gm.PRIOR + "num_clients"] > 0
    assert torch.equal(counts, avail.long() * algo.hp.bank_size)


def test_spread_form_compresses_the_broadcast(setup):
    cfg, fed = setup
    shapes = {}
    for form in ("full", "diag", "scalar"):
        algo = make_algorithm("pfedgm", fed, {"spread_form": form}, cfg=cfg)
        server, _ = warm(algo, fed)
        shapes[form] = tuple(algo.broadcast(server, 1)[gm.PRIOR + "spread"].shape)
    c, d = fed.num_classes, cfg.model.options_for("cnn").feature_dim
    assert shapes == {"full": (c, d, d), "diag": (c, d), "scalar": (c,)}


# ----- local fusion modes ---------------------------------------------------------------------
def _personal(cfg, fed, hp, client):
    algo = make_algorithm("pfedgm", fed, hp, cfg=cfg)
    server, _ = warm(algo, fed)
    bcast = algo.broadcast(server, 1)
    personal = algo.personal_gaussian_of(bcast, client, ctx(1, client.client_id))
    local = class_stats(features_in_batches(algo.model, client.x_train), client.y_train, fed.num_classes)
    return personal, GlobalPrior.from_payload(bcast, gm.PRIOR), local


def test_gain_global_gives_global_means_and_local_gives_local_means(setup):
    cfg, fed = setup
    client = fed.clients[1]
    personal, prior, local = _personal(cfg, fed, {"gain": "global"}, client)
    torch.testing.assert_close(personal.means, prior.means)
    personal, prior, local = _personal(cfg, fed, {"gain": "local"}, client)
    held = local.present
    torch.testing.assert_close(personal.means[held], local.means[held])
    torch.testing.assert_close(personal.means[~held], prior.means[~held])
    # the Kalman gain lies strictly between for at least one held class
    personal, prior, local = _personal(cfg, fed, {}, client)
    g = personal.gain[local.present]
    assert bool(((g > 0) & (g < 1)).any())


@pytest.mark.parametrize("gain", ["kalman", "interpolate"])
def test_a_class_the_client_lacks_gets_the_global_mean(setup, gain):
    cfg, fed = setup
    base = fed.clients[2]
    c = int(torch.bincount(base.y_train).argmax())
    client = without_class(base, c)
    personal, prior, local = _personal(cfg, fed, {"gain": gain}, client)
    assert local.counts[c] == 0 and bool(prior.available[c])
    torch.testing.assert_close(personal.means[c], prior.means[c])


@pytest.mark.parametrize("form,temperature", [("full", 1.0), ("diag", 1.0), ("scalar", 1.0), ("diag", 3.0),
                                               ("diag", 1e4)])
def test_personal_head_is_bayes_rule_of_the_personal_gaussian(setup, form, temperature):
    """p ∝ pi_kc N(z; mu_kc, T Sigma_k) (``head_temperature = T``): the tied covariance's
    log-likelihoods over T plus log pi_kc; a very large T leaves the class prior alone."""
    cfg, fed = setup
    algo = make_algorithm("pfedgm", fed, {"gain_form": form, "head_temperature": temperature}, cfg=cfg)
    server, _ = warm(algo, fed)
    bcast = algo.broadcast(server, 1)
    client = fed.clients[0]
    personal = algo.personal_gaussian_of(bcast, client, ctx(1, 0))
    predictor = algo.personal_predictor(bcast, {}, client, ctx(1, 0))
    with torch.no_grad():
        got = predictor(client.x_test).double()
        z = algo.model.features(client.x_test).double()
    normal = torch.distributions.MultivariateNormal(personal.means, covariance_matrix=personal.cov)
    joint = normal.log_prob(z[:, None, :]) / temperature + personal.class_prior.log()
    want = torch.log_softmax(joint, dim=1)
    assert torch.allclose(got, want, atol=2e-3, rtol=1e-4), float((got - want).abs().max())
    assert torch.equal(got.argmax(1), want.argmax(1))
    if temperature > 100:
        prior = torch.log_softmax(personal.class_prior.log(), 0).expand_as(got)
        assert torch.allclose(got, prior, atol=0.05)


def test_student_t_predictive_gives_normalised_probabilities(setup):
    cfg, fed = setup
    algo = make_algorithm("pfedgm", fed, {"predictive": "student_t"}, cfg=cfg)
    server, _ = warm(algo, fed)
    predictor = algo.personal_predictor(algo.broadcast(server, 1), {}, fed.clients[0], ctx(1, 0))
    with torch.no_grad():
        out = predictor(fed.clients[0].x_test)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    torch.testing.assert_close(out.exp().sum(1), torch.ones(out.shape[0]))


def isotropic_prior(means: torch.Tensor) -> GlobalPrior:
    """A broadcast prior with class means (C, d), covariance I and a small spread."""
    c, d = means.shape
    f64 = torch.float64
    eye = torch.eye(d, dtype=f64)
    return GlobalPrior(means=means.to(f64), cov=eye, spread=0.01 * eye.repeat(c, 1, 1),
                       class_prior=torch.full((c,), 1.0 / c, dtype=f64), num_clients=torch.full((c,), 5.0, dtype=f64),
                       class_counts=torch.full((c,), 100.0, dtype=f64), dof=torch.tensor(1000.0, dtype=f64))


def test_cross_validated_covariance_weight_follows_the_evidence():
    """``cov_weight = cross_validated``, over 10 draws each: clients whose few features are drawn
    from the prior's own covariance keep mostly Sigma_g (small kappa); clients with many features
    whose noise is correlated in a way the isotropic prior misses (cancelling it separates the
    classes) take their own covariance (large kappa)."""
    d, g = 8, torch.Generator().manual_seed(0)
    means = torch.zeros(2, d)
    means[1, 1] = 1.0
    prior = isotropic_prior(means)
    hp = gm.PFedGMHParams(cov_weight="cross_validated")

    def draw(n_per_class: int, correlated: bool) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(2).repeat_interleave(n_per_class)
        e = torch.randn(y.numel(), d, generator=g)
        if correlated:  # dims 0 and 1 share a large noise term: x1 - x0 is clean
            e[:, 0] = 3.0 * e[:, 0]
            e[:, 1] = e[:, 0] + 0.3 * e[:, 1]
        return (means[y] + e).double(), y

    def mean_kappa(n_per_class: int, correlated: bool) -> float:
        kappas = [gm.covariance_weight(*draw(n_per_class, correlated), prior, hp, torch.Generator().manual_seed(1))
                  for _ in range(10)]
        assert all(k is not None for k in kappas)
        return sum(kappas) / len(kappas)

    few, many = mean_kappa(6, correlated=False), mean_kappa(200, correlated=True)
    assert few <= 0.4 and many >= 0.8, (few, many)
    z, y = draw(200, correlated=True)
    personal = gm.personal_gaussian(z, y, prior, hp, torch.Generator().manual_seed(1))
    assert float(personal.kappa) == gm.covariance_weight(z, y, prior, hp, torch.Generator().manual_seed(1))
    # one sample per class: no 2-fold CV, so the pseudo-count rule n / (n + nu0) stays
    personal = gm.personal_gaussian(z[[0, 200]], y[[0, 200]], prior, hp, torch.Generator().manual_seed(1))
    torch.testing.assert_close(float(personal.kappa), 2.0 / (2.0 + hp.nu0))


def test_cross_validated_covariance_weight_and_interpolation_are_refused_together():
    with pytest.raises(ConfigError, match="cov_weight=cross_validated and hp.pfedgm.gain=interpolate are both set"):
        load_config(None, ["algorithm=pfedgm", "hp.pfedgm.cov_weight=cross_validated", "hp.pfedgm.gain=interpolate"])


# ----- global filter ----------------------------------------------------------------------------
def test_filter_keeps_a_class_no_participant_held(setup):
    cfg, fed = setup
    algo = make_algorithm("pfedgm", fed, cfg=cfg)
    server, _ = warm(algo, fed)
    before = algo.filter_state(server)
    c = 3
    assert bool(before.initialized[c])
    bcast = algo.broadcast(server, 1)
    participants = [without_class(fed.clients[k], c) for k in (0, 1)]  # partial participation, no class c
    ups = [algo.local_update(bcast, {}, p, ctx(1, p.client_id)) for p in participants]
    assert all(float(u.upload[gm.STATS + "counts"][c]) == 0 for u in ups)
    after = algo.filter_state(algo.aggregate(server, ups, 1))
    assert bool(after.initialized[c])
    torch.testing.assert_close(after.means[c], before.means[c])
    others = torch.arange(fed.num_classes) != c
    assert not torch.allclose(after.means[others], before.means[others])
    # its uncertainty grew by the process noise (predict, no update), so the filter stays open to it
    assert float(after.mean_uncertainty[c].trace()) > float(before.mean_uncertainty[c].trace())
    new_bcast = algo.broadcast(algo.aggregate(server, ups, 1), 2)
    assert float(new_bcast[gm.PRIOR + "num_clients"][c]) > 0
    assert int((new_bcast[gm.BANK_Y] == c).sum()) == algo.hp.bank_size


def test_no_global_filter_takes_the_rounds_pooled_means(setup):
    cfg, fed = setup
    algo = make_algorithm("pfedgm", fed, {"global_filter": False}, cfg=cfg)
    server, _ = warm(algo, fed)
    bcast = algo.broadcast(server, 1)
    ups = [algo.local_update(bcast, {}, c, ctx(1, c.client_id)) for c in fed.clients]
    state = algo.filter_state(algo.aggregate(server, ups, 1))
    pooled = merge([ClassStats.from_payload(u.upload, gm.STATS) for u in ups])
    torch.testing.assert_close(state.means[pooled.present], pooled.means[pooled.present])


# ----- edge cases -------------------------------------------------------------------------------
@pytest.mark.parametrize("hp", [{}, {"predictive": "student_t"}, {"gain_form": "full"}, {"gain": "interpolate"},
                                {"noise_cov": "fused"}])
def test_single_class_and_single_sample_clients_give_finite_predictions(setup, hp):
    cfg, fed = setup
    algo = make_algorithm("pfedgm", fed, hp, cfg=cfg)
    base = fed.clients[0]
    c = int(base.y_train[0])
    single_class = subset(base, base.y_train == c)
    single_sample = subset(base, torch.arange(base.num_train) == 0)
    server, _ = warm(algo, fed, [single_class, single_sample] + fed.clients[1:])
    bcast = algo.broadcast(server, 1)
    for client in (single_class, single_sample):
        up = algo.local_update(bcast, {}, client, ctx(1, client.client_id))
        assert all(torch.isfinite(v.double()).all() for v in up.upload.values())
        personal = algo.personal_gaussian_of(bcast, client, ctx(1, client.client_id))
        assert torch.isfinite(personal.means).all() and torch.isfinite(personal.cov).all()
        with torch.no_grad():
            out = algo.personal_predictor(bcast, {}, client, ctx(1, client.client_id))(client.x_test)
        assert torch.isfinite(out).all()


# ----- objectives ---------------------------------------------------------------------------------
def test_local_objective_pulls_features_towards_the_personal_means():
    # lr 0.02: one epoch stays in the regime where a gradient step lowers what it targets
    cfg = tiny_config(*SMALL, "train.lr=0.02")
    fed = tiny_fed(cfg)
    for client in fed.clients[:3]:
        dist = {}
        for lam in (0.0, 5.0):
            algo = make_algorithm("pfedgm", fed, {"lambda_local": lam}, cfg=cfg)
            server, _ = warm(algo, fed)
            bcast = algo.broadcast(server, 1)
            target = algo.personal_gaussian_of(bcast, client, ctx(1, client.client_id)).means.float()
            algo.local_update(bcast, {}, client, ctx(1, client.client_id))
            z = features_in_batches(algo.model, client.x_train)
            dist[lam] = float((z - target[client.y_train]).pow(2).sum(1).mean())
        assert dist[5.0] < 0.8 * dist[0.0], dist


def test_local_objective_value_and_gradient():
    z = torch.tensor([[1.0, 2.0], [0.0, 0.0]], requires_grad=True)
    y = torch.tensor([1, 0])
    means = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    loss = gm.local_objective(z, y, means)
    assert float(loss.detach()) == pytest.approx(0.5 * (4.0 + 1.0) / 2)
    loss.backward()
    torch.testing.assert_close(z.grad, (z.detach() - means[y]) / 2)


def test_virtual_features_train_the_navigator_only():
    nav = gm.Navigator(torch.nn.Parameter(torch.randn(3, 4)), torch.nn.Parameter(torch.zeros(())))
    z = torch.randn(5, 4, requires_grad=True)
    zv, yv = torch.randn(6, 4), torch.tensor([0, 0, 1, 1, 2, 2])
    real_only = gm.shared_objective(nav.logits, z, torch.zeros(5, dtype=torch.long), zv, yv, 0.0)
    both = gm.shared_objective(nav.logits, z, torch.zeros(5, dtype=torch.long), zv, yv, 1.0)
    assert float(both.detach()) > float(real_only.detach())
    g_both = torch.autograd.grad(both, [nav.position, z])
    g_real = torch.autograd.grad(real_only, [nav.position, z])
    torch.testing.assert_close(g_both[1], g_real[1])  # the body sees the real features only
    assert not torch.allclose(g_both[0], g_real[0])  # the anchors see the virtual ones too


@pytest.mark.parametrize("coords", gm.NAVIGATOR_COORDS)
def test_navigator_coordinates_keep_the_spec_logits_and_payload(coords):
    anchors, log_scale = torch.randn(3, 4), torch.tensor(1.3)
    nav = gm.Navigator.from_payload({gm.ANCHORS: anchors, gm.LOG_SCALE: log_scale}, "cpu", trainable=True, coords=coords)
    z = torch.randn(5, 4)
    spec = -0.5 * log_scale.exp() * torch.cdist(z, anchors).pow(2)
    torch.testing.assert_close(nav.logits(z), spec, rtol=1e-5, atol=1e-5)
    back = nav.to_payload()
    torch.testing.assert_close(back[gm.ANCHORS], anchors)
    assert float(back[gm.LOG_SCALE]) == pytest.approx(1.3)


def test_logit_weight_coordinates_step_like_a_linear_head():
    """One SGD step on the trained coordinates (s held): in ``logit_weights`` the logit weights
    u = exp(s) m move by -lr dL/du, a linear head's step; in ``anchors`` exp(2s) times further."""
    anchors, log_scale, lr = torch.randn(3, 4), torch.tensor(1.5), 0.01
    z, y = torch.randn(8, 4), torch.randint(0, 3, (8,))

    def weight_step(coords):
        nav = gm.Navigator.from_payload({gm.ANCHORS: anchors, gm.LOG_SCALE: log_scale}, "cpu", trainable=True,
                                        coords=coords)
        u0 = nav.anchors.detach() * log_scale.exp()
        (grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(nav.logits(z), y), [nav.position])
        with torch.no_grad():
            nav.position -= lr * grad
        return nav.anchors.detach() * log_scale.exp() - u0

    u = (anchors * log_scale.exp()).requires_grad_(True)
    linear_logits = z @ u.T - 0.5 * (u * u).sum(1) / log_scale.exp()  # the same logits, up to a row constant
    (grad_u,) = torch.autograd.grad(torch.nn.functional.cross_entropy(linear_logits, y), [u])
    torch.testing.assert_close(weight_step("logit_weights"), -lr * grad_u, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(weight_step("anchors"), -lr * grad_u * float((2 * log_scale).exp()), rtol=1e-4,
                               atol=1e-5)


@pytest.mark.parametrize("coords", gm.NAVIGATOR_COORDS)
def test_navigator_step_multiplies_the_sgd_step_and_keeps_the_logits(coords):
    """``navigator_step = k``: the same logits and payload, and one SGD step moves the anchors k
    times as far as with k = 1, in either coordinates."""
    g = torch.Generator().manual_seed(0)
    anchors, log_scale, lr = torch.randn(3, 4, generator=g), torch.tensor(0.7), 0.01
    z, y = torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)

    def anchor_step(step):
        nav = gm.Navigator.from_payload({gm.ANCHORS: anchors, gm.LOG_SCALE: log_scale}, "cpu", trainable=True,
                                        coords=coords, step=step)
        torch.testing.assert_close(nav.to_payload()[gm.ANCHORS], anchors)
        logits = nav.logits(z)
        (grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, y), [nav.position])
        with torch.no_grad():
            nav.position -= lr * grad
        return logits.detach(), nav.anchors.detach() - anchors

    logits_1, move_1 = anchor_step(1.0)
    logits_k, move_k = anchor_step(20.0)
    torch.testing.assert_close(logits_k, logits_1)
    # atol: float32 anchors of size ~1 are subtracted to give moves of ~1e-2 (cancellation ~1e-6)
    torch.testing.assert_close(move_k, 20.0 * move_1, rtol=1e-4, atol=1e-5)


# ----- whole runs -------------------------------------------------------------------------------
ABLATIONS = [
    {"navigator": False}, {"lambda_local": 0.0}, {"virtual_weight": 0.0}, {"bank_size": 0},
    {"gain": "global"}, {"gain": "local"}, {"gain": "interpolate"}, {"global_filter": False},
    {"resample_tau": 0.5}, {"predictive": "student_t"}, {"gain_form": "full"}, {"gain_form": "scalar"},
    {"noise_source": "none", "process_noise": 0.0}, {"noise_source": "innovation", "prior_uncertainty": True},
    {"noise_cov": "fused"}, {"navigator_coords": "anchors"}, {"navigator_step": 20.0},
    {"head_temperature": 3.0}, {"cov_weight": "cross_validated"}, {"navigator_reanchor": True},
]


@pytest.fixture(scope="module")
def tiny():
    cfg = tiny_config("data.num_clients=3", "data.max_samples=240")
    return cfg, tiny_fed(cfg)


@pytest.mark.parametrize("hp", ABLATIONS, ids=lambda hp: ",".join(f"{k}={v}" for k, v in hp.items()))
def test_every_ablation_runs_one_round(tiny, hp):
    cfg, fed = tiny
    res = run_sim("pfedgm", fed, hp, rounds=1, cfg=cfg)
    assert [r["round"] for r in res.history] == [0, 1]
    acc = res.summary["last"]["test"]["mean"]
    assert 0.0 <= acc <= 1.0 and res.history[-1]["bytes_up"] > 0


def test_same_seed_same_run_with_partial_participation(tiny):
    cfg, fed = tiny
    a = run_sim("pfedgm", fed, rounds=2, fraction=0.67, cfg=cfg)
    b = run_sim("pfedgm", fed, rounds=2, fraction=0.67, cfg=cfg)
    assert [r["eval"] for r in a.history if "eval" in r] == [r["eval"] for r in b.history if "eval" in r]
    assert set(a.server) == set(b.server)
    for k in a.server:
        assert torch.equal(a.server[k], b.server[k]), k
    assert len(a.history[1]["clients"]) == 2  # partial participation did happen


def test_resume_from_a_checkpoint_replays_the_uninterrupted_run(tiny, tmp_path):
    cfg, fed = tiny
    settings = SimulationSettings(seed=0, rounds=3, client_fraction=0.67)
    full = Simulator(make_algorithm("pfedgm", fed, cfg=cfg), fed.clients, settings,
                     [Checkpointer(tmp_path / "full.pt", every=1)]).run()
    ckpt = tmp_path / "checkpoint.pt"
    stop_after_round(Simulator(make_algorithm("pfedgm", fed, cfg=cfg), fed.clients, settings,
                               [Checkpointer(ckpt, every=1)]), 2)
    resumed = Simulator(make_algorithm("pfedgm", fed, cfg=cfg), fed.clients, settings).run(Checkpointer.load(ckpt))
    assert [r.get("eval") for r in resumed.history] == [r.get("eval") for r in full.history]
    for k in full.server:  # the bank and the filter included
        assert torch.equal(resumed.server[k], full.server[k]), k


def test_aggregate_is_a_function_of_its_inputs(setup):
    cfg, fed = setup
    algo = make_algorithm("pfedgm", fed, cfg=cfg)
    server, ups = warm(algo, fed)
    again = algo.aggregate(algo.init_server(), ups, 0)
    assert torch.equal(server[gm.BANK_Z], again[gm.BANK_Z])
    other_round = algo.aggregate(algo.init_server(), ups, 5)
    assert not torch.equal(server[gm.BANK_Z], other_round[gm.BANK_Z])


def test_no_navigator_ablation_shares_the_linear_head(setup):
    cfg, fed = setup
    algo = make_algorithm("pfedgm", fed, {"navigator": False}, cfg=cfg)
    server, _ = warm(algo, fed)
    bcast = algo.broadcast(server, 1)
    assert gm.ANCHORS not in bcast and set(algo.keys("head")) <= set(bcast)
    up = algo.local_update(bcast, {}, fed.clients[0], ctx(1, 0))
    assert set(algo.keys("head")) <= set(up.upload)
    assert max_abs_diff({k: bcast[k] for k in algo.keys("head")}, {k: up.upload[k] for k in algo.keys("head")}) > 0


def test_hyperparameters_are_validated_from_the_config():
    cfg = load_config(None, ["algorithm=pfedgm", "hp.pfedgm.gain_form=full", "hp.pfedgm.lambda_local=0"])
    hp = cfg.hparams()
    assert isinstance(hp, gm.PFedGMHParams) and hp.gain_form == "full" and hp.lambda_local == 0.0
    with pytest.raises(ConfigError, match="hp.pfedgm.gain='half' is not allowed"):
        load_config(None, ["hp.pfedgm.gain=half"])
    with pytest.raises(ConfigError, match="hp.pfedgm.resample_tau=-1 is out of range"):
        load_config(None, ["hp.pfedgm.resample_tau=-1"])
    with pytest.raises(ConfigError, match="hp.pfedgm.bank_size='many' must be an integer"):
        load_config(None, ["hp.pfedgm.bank_size=many"])
