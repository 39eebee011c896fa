"""pFedFDA (Mclaughlin and Su, "Personalized Federated Learning via Feature Distribution
Adaptation", NeurIPS 2024).

Representation learning as generative modelling: the shared body is trained through a fixed
Gaussian class-conditional head (class means, one tied covariance, so the head is linear,
LDA-style); each client personalises the head by interpolating its own feature statistics with
the global ones,

    mu_i    = beta_mu  * mu_hat_i    + (1 - beta_mu)  * mu_g
    Sigma_i = beta_cov * Sigma_hat_i + (1 - beta_cov) * Sigma_g,       beta in [0, 1]

with beta chosen by k-fold cross-validation on the client's training features, and predicts
with Bayes' rule ``p(y=c|z) ∝ pi_c N(z; mu_i,c, Sigma_i)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from pfedkit.algorithms.protocol import Algorithm, ClientUpdate, Predictor, RoundContext
from pfedkit.algorithms.registry import register_algorithm
from pfedkit.algorithms.toolkit.dp_sgd import poisson_schedule
from pfedkit.algorithms.toolkit.partial_sharing import parameters_named
from pfedkit.algorithms.toolkit.privacy import STATS_RELEASE, PrivacyLedger, ledger_for
from pfedkit.algorithms.toolkit.training import features_in_batches, train_epochs
from pfedkit.core.config import param
from pfedkit.core.payload import Payload, weighted_average
from pfedkit.core.seeding import torch_generator
from pfedkit.data.client_data import ClientData
from pfedkit.models.split import SplitModel
from pfedkit.stats.folds import cross_validated_choice
from pfedkit.stats.fusion import interpolate
from pfedkit.stats.gaussian_head import GaussianHead
from pfedkit.stats.privacy_accounting import Mechanism
from pfedkit.stats.sufficient import STATS_DTYPE, ClassStats, class_stats, shrink, tied_covariance

MEANS = "fda.means"  # (C, d): server: global means; upload: the client's interpolated means
COV = "fda.cov"  # (d, d): server: global tied covariance; upload: the client's interpolated one
VALID = "fda.valid"  # (C,) 0/1: server: classes with a global mean; upload: rows of MEANS that are estimates
BETA = "fda.beta"  # (2,) personal state: the last (beta_mu, beta_cov), for inspection


@dataclass
class PFedFDAHParams:
    cv_folds: int = param(2, lo=2, hi=20, doc="folds of the stratified cross-validation that picks beta")
    single_beta: bool = param(False, doc="one beta for means and covariance (default: one each, as the authors' code)")
    beta_grid: int = param(11, lo=2, hi=1001, doc="beta is searched on this many evenly spaced points of [0, 1]")
    min_class_samples: int = param(2, lo=0, hi=1000,
                                   doc="a local class mean needs more than this many samples, else the global "
                                       "mean is used")
    cov_ridge: float = param(1.0, lo=0.0, hi=1e6,
                             doc="added to the diagonal of every local covariance estimate (the authors' code adds I)")
    eps: float = param(1e-4, lo=0.0, hi=1.0, doc="covariance shrinkage towards tr(S)/d * I before inversion")
    prior_eps: float = param(1e-4, lo=0.0, hi=1.0, doc="added to the local class frequencies before normalising")


@register_algorithm
class PFedFDA(Algorithm[PFedFDAHParams]):
    """pFedFDA.

    Shared: the body (``body.*``, sample-weighted average) and the global Gaussian statistics
    ``fda.means`` (C, d), ``fda.cov`` (d, d), ``fda.valid`` (C,). The model's own head is unused:
    the classifier is always the Gaussian head (linear form W, b from `pfedkit.stats`).
    Upload: body tensors, the client's interpolated ``fda.means``, ``fda.cov`` and ``fda.valid``.
    Personal: nothing that cannot be recomputed; the head is rebuilt from the current body, the
    client's training split and the global statistics whenever it is needed. ``fda.beta`` (2,)
    in the client state records the last betas.

    Initial global statistics (authors' code): means drawn uniformly from [0, 1]^(C x d) (seeded
    by the run seed) and the identity covariance. In round 1 the body therefore learns to map
    each class towards a random anchor, which separates the classes from the start (features
    of a freshly initialised body barely differ between classes).

    Each round, client: load the global body; freeze the Gaussian head built from the global
    statistics and the local class priors; train the body for ``train.local_epochs`` epochs with
    cross-entropy through it; compute training features (eval mode); choose beta by
    cross-validation (`select_beta`); upload the interpolated statistics. Server: average the
    bodies; global means = per-class sample-weighted mean of the uploaded interpolated means
    (over the uploads that have an estimate for the class), global covariance = sample-weighted
    mean of the uploaded covariances (the authors' code averages the interpolated statistics).

    Local estimates: class means from ``class_stats`` (a class with at most
    ``min_class_samples`` samples takes the global mean, as in the code); tied covariance
    ``S / (n - C_present)`` from ``tied_covariance`` plus ``cov_ridge * I`` (the code divides
    the scatter by n - 1 and adds the identity, which keeps the head well conditioned when
    features have dead dimensions); before inversion every covariance is also shrunk by ``eps``
    (as the code's classifier does). Priors: local class frequencies + ``prior_eps``,
    normalised. beta is searched on a grid (the code runs 10 L-BFGS steps from 0.5 on the same
    cross-validation loss).
    """

    name = "pfedfda"
    key_prefix = "fda."
    paper = "Mclaughlin and Su, Personalized Federated Learning via Feature Distribution Adaptation, NeurIPS 2024"
    shares = "body + Gaussian statistics (interpolated class means, tied covariance)"
    keeps = "nothing persistent: the Gaussian head is refit from local features each time"
    supports_privacy = True  # DP-SGD on the body, noised statistics (docs/privacy.md)

    def setup(self) -> None:
        self.body_keys = self.keys("body")
        if self.privacy.enabled:  # train, fit and release the statistics of features in one ball
            self.model.feature_bound = self.privacy.stats_clip

    # ----- server -------------------------------------------------------------------------
    def init_server(self) -> Payload:
        """Global body, random global means ~ U[0, 1]^(C x d) and identity covariance (as the
        authors' code); the means come from a generator seeded by the run seed."""
        c, d = self.num_classes, self.model.feature_dim
        means = torch.rand(c, d, generator=torch_generator(self.seed, 0xFDA))
        return {**self.snapshot(self.body_keys), MEANS: means, COV: torch.eye(d), VALID: torch.ones(c)}

    def aggregate(self, server: Payload, updates: list[ClientUpdate], round: int) -> Payload:
        ups = [u for u in updates if u.upload]
        if not ups:
            return server
        out = dict(server)
        weights = [u.weight for u in ups]
        if all(k in u.upload for u in ups for k in self.body_keys):
            out.update(weighted_average([{k: u.upload[k] for k in self.body_keys} for u in ups], weights))
        w = torch.tensor(weights, dtype=STATS_DTYPE)
        valid = torch.stack([u.upload[VALID].to(STATS_DTYPE).cpu() for u in ups])  # (K, C)
        means = torch.stack([u.upload[MEANS].to(STATS_DTYPE).cpu() for u in ups])  # (K, C, d)
        wc = w[:, None] * valid
        total = wc.sum(0)
        held = total > 0
        pooled = (wc[..., None] * means).sum(0) / total.clamp_min(1e-300)[:, None]
        old = server[MEANS]
        out[MEANS] = torch.where(held[:, None], pooled, old.to(STATS_DTYPE).cpu()).to(old)
        covs = torch.stack([u.upload[COV].to(STATS_DTYPE).cpu() for u in ups])
        out[COV] = ((w[:, None, None] * covs).sum(0) / w.sum()).to(server[COV])
        out[VALID] = torch.maximum(server[VALID].cpu(), held.to(server[VALID].dtype)).to(server[VALID])
        return out

    # ----- client -------------------------------------------------------------------------
    def privacy_plan(self, round: int, num_train: int) -> list[Mechanism]:
        return [poisson_schedule(num_train, self.train.batch_size, self.train.local_epochs), STATS_RELEASE]

    def local_update(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> ClientUpdate:
        self.load({k: broadcast[k] for k in self.body_keys})
        ledger = ledger_for(self, state, data.num_train)
        # private: the training head's class prior would be one more release of the counts; uniform instead
        prior = None if ledger.active else local_prior(data.class_counts("train"), self.hp.prior_eps)
        g_means, g_cov = broadcast[MEANS], broadcast[COV]
        head = lda_head(g_means, g_cov, prior, self.hp.eps).to(device=ctx.device)
        model = self.model

        def loss_fn(xb: Tensor, yb: Tensor) -> Tensor:
            return F.cross_entropy(head.logits(model.features(xb)), yb)

        loss = train_epochs(model, data.x_train, data.y_train, self.train, ctx.generator,
                            params=parameters_named(model, self.body_keys), loss_fn=loss_fn, private=ledger.dp_sgd())
        if ledger.active:
            return self.private_update(broadcast, state, data, ctx, ledger, loss)
        means, cov, valid, betas = self.personal_gaussian(broadcast, data, ctx.generator)
        upload = {**self.snapshot(self.body_keys), MEANS: means.float(), COV: cov.float(), VALID: valid.float()}
        metrics = {"train_loss": loss, "beta_mu": float(betas[0]), "beta_cov": float(betas[1])}
        return ClientUpdate(upload=upload, weight=data.num_train, state={BETA: betas.float()}, metrics=metrics)

    def private_update(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext,
                       ledger: PrivacyLedger, loss: float) -> ClientUpdate:
        """The upload with privacy on: the client's own Gaussian from its noised statistics
        (``ledger.class_stats``), not the interpolation with the global one, whose beta is chosen
        on the raw data; the server averages these as it averages interpolated ones. The
        personal head (`personal_predictor`) still interpolates, on the client, unnoised."""
        z = features_in_batches(self.model, data.x_train) if data.num_train else torch.zeros(0, self.model.feature_dim)
        stats = ledger.class_stats(z, data.y_train, self.num_classes, ctx.generator)
        g_valid = broadcast[VALID].cpu() > 0
        means, cov, usable = gaussian_of_stats(stats, g_valid, self.hp.min_class_samples, self.hp.cov_ridge)
        upload = {**self.snapshot(self.body_keys), MEANS: means.float(), COV: cov.float(), VALID: usable.float()}
        return ClientUpdate(upload=upload, weight=ledger.weight(data.num_train, stats), state=ledger.state(state),
                            metrics={"train_loss": loss, **ledger.metrics()})

    def personal_gaussian(self, broadcast: Payload, data: ClientData, generator: torch.Generator
                          ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The client's interpolated Gaussian under the body now in the workspace model.

        Returns:
            means (C, d) float64, cov (d, d) float64 (before shrinkage), valid (C,) bool (rows
            that are estimates: the client's own or the global one), betas (2,) (beta_mu,
            beta_cov) in [0, 1].
        """
        z = features_in_batches(self.model, data.x_train)
        g_means = broadcast[MEANS].to(z.device)
        g_cov = broadcast[COV].to(z.device)
        g_valid = broadcast[VALID].to(z.device) > 0
        prior = local_prior(data.class_counts("train"), self.hp.prior_eps).to(z.device)
        y = data.y_train.to(z.device)
        betas = select_beta(z, y, g_means, g_cov, g_valid, prior, self.hp, generator)
        l_means, l_cov, usable = local_gaussian(z, y, self.num_classes, g_valid, self.hp.min_class_samples,
                                                 self.hp.cov_ridge)
        means, cov = adaptive_gaussian(l_means, l_cov, usable, g_means, g_cov, betas)
        return means, cov, usable | g_valid, betas

    def personal_predictor(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> Predictor:
        self.load({k: broadcast[k] for k in self.body_keys})
        self.model.eval()
        prior = local_prior(data.class_counts("train"), self.hp.prior_eps)
        if data.num_train == 0:
            head = lda_head(broadcast[MEANS], broadcast[COV], None, self.hp.eps)
        else:
            means, cov, _, _ = self.personal_gaussian(broadcast, data, ctx.generator)
            head = lda_head(means, cov, prior, self.hp.eps)
        return gaussian_predictor(self.model, head.to(device=ctx.device))


# ----- the statistics pieces (pure functions) --------------------------------------------------
def local_prior(class_counts: Tensor, eps: float) -> Tensor:
    """(C,) class frequencies + eps, normalised (float64); uniform for an empty split."""
    p = class_counts.to(STATS_DTYPE) / max(float(class_counts.sum()), 1.0) + eps
    return p / p.sum() if float(p.sum()) > 0 else torch.full_like(p, 1.0 / p.numel())


def lda_head(means: Tensor, cov: Tensor, prior: Tensor | None, eps: float) -> GaussianHead:
    """Tied-covariance Gaussian head: logits_c = z^T S^-1 mu_c - mu_c^T S^-1 mu_c / 2 + log pi_c
    with ``S = shrink(cov, eps)``. means (C, d), cov (d, d), prior (C,) or None (uniform)."""
    return GaussianHead.from_gaussians(means, shrink(cov, eps), class_prior=prior)


def local_gaussian(z: Tensor, y: Tensor, num_classes: int, global_valid: Tensor, min_samples: int,
                   ridge: float) -> tuple[Tensor, Tensor, Tensor]:
    """A client's own estimates from features z (n, d) and labels y (n,).

    Returns:
        means (C, d) float64 (0 rows where unusable), tied covariance + ridge * I (d, d) float64,
        and usable (C,) bool: classes with more than ``min_samples`` samples, or with any sample
        when no global mean exists for them yet.
    """
    return gaussian_of_stats(class_stats(z, y, num_classes), global_valid, min_samples, ridge)


def gaussian_of_stats(stats: ClassStats, global_valid: Tensor, min_samples: int, ridge: float
                      ) -> tuple[Tensor, Tensor, Tensor]:
    """`local_gaussian` from a client's statistics (exact, or released with noise)."""
    usable = (stats.counts > min_samples) | ((stats.counts > 0) & ~global_valid.to(stats.counts.device))
    cov = tied_covariance(stats)
    return stats.means, cov + ridge * torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device), usable


def adaptive_gaussian(local_means: Tensor, local_cov: Tensor, usable: Tensor, global_means: Tensor,
                      global_cov: Tensor, betas: Tensor) -> tuple[Tensor, Tensor]:
    """``beta_mu * local + (1 - beta_mu) * global`` for the means (rows not ``usable`` take the
    global mean) and ``beta_cov * local + (1 - beta_cov) * global`` for the covariance.
    betas (2,) = (beta_mu, beta_cov) in [0, 1]. Returns means (C, d), cov (d, d) float64."""
    means, _ = interpolate(local_means, local_cov, global_means, global_cov, float(betas[0]), present=usable)
    _, cov = interpolate(local_means, local_cov, global_means, global_cov, float(betas[1]))
    return means, cov


def select_beta(z: Tensor, y: Tensor, global_means: Tensor, global_cov: Tensor, global_valid: Tensor,
                prior: Tensor, hp: PFedFDAHParams, generator: torch.Generator) -> Tensor:
    """Cross-validated (beta_mu, beta_cov) in [0, 1]^2.

    A thin caller of `pfedkit.stats.folds.cross_validated_choice`: classes with fewer than
    ``cv_folds`` samples are left out; the remaining samples are split into ``cv_folds``
    stratified folds. For each grid point (beta_cov outer, beta_mu inner; the first minimum
    wins) the loss is the sum over folds of the mean cross-entropy, on the held-out fold, of
    the Gaussian head whose local statistics come from the other folds. With ``single_beta``
    the two betas are tied. Falls back to (0, 0), the global statistics, when no
    cross-validation is possible.

    Args:
        z: (n, d) training features. y: (n,) labels. global_means (C, d), global_cov (d, d),
        global_valid (C,) bool, prior (C,).
    Returns:
        (2,) float64 tensor.
    """
    c = global_means.shape[0]
    grid = torch.linspace(0.0, 1.0, hp.beta_grid, dtype=STATS_DTYPE)
    pairs = [(b, b) for b in grid] if hp.single_beta else [(bm, bc) for bc in grid for bm in grid]

    def fit_fold(train: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return local_gaussian(z[train], y[train], c, global_valid, hp.min_class_samples, hp.cov_ridge)

    def fold_loss(betas: Tensor, fold: tuple[Tensor, Tensor, Tensor], test: Tensor) -> float:
        means, cov, usable = fold
        m, s = adaptive_gaussian(means, cov, usable, global_means, global_cov, betas)
        head = lda_head(m, s, prior, hp.eps)
        return float(F.cross_entropy(head.logits(z[test].to(head.weight.dtype)), y[test]))

    best = cross_validated_choice(y, c, hp.cv_folds, generator, (torch.stack(p) for p in pairs), fit_fold,
                                  fold_loss)
    return torch.zeros(2, dtype=STATS_DTYPE) if best is None else best


def gaussian_predictor(model: SplitModel, head: GaussianHead) -> Predictor:
    """(B, C, H, W) -> (B, num_classes) logits ``head.logits(body(x))`` (log pi_c + log N(z; mu_c, S)
    up to a per-sample constant)."""

    def predict(x: Tensor) -> Tensor:
        return head.logits(model.features(x))

    return predict
