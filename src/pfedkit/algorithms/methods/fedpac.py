"""FedPAC (Xu, Tong, Huang, "Personalized Federated Learning with Feature Alignment and Classifier
Collaboration", ICLR 2023).

A shared body trained with its features pulled towards global class prototypes, and personal
linear heads that the server recombines per client: client i's new head is a convex combination
``sum_j alpha_ij head_j`` of this round's heads, with ``alpha_i`` minimising an estimate of
client i's test error (bias of borrowing other clients' heads + variance of few samples).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pfedkit.algorithms.protocol import Algorithm, ClientUpdate, Predictor, RoundContext
from pfedkit.algorithms.registry import register_algorithm
from pfedkit.algorithms.toolkit import prototypes as P
from pfedkit.algorithms.toolkit.partial_sharing import parameters_named
from pfedkit.algorithms.toolkit.training import features_in_batches, train_epochs
from pfedkit.core.config import param
from pfedkit.core.payload import Payload, clone_payload, weighted_average
from pfedkit.data.client_data import ClientData

VAR = "pac.var"
COMBINED = "pac.head."  # server/broadcast keys: "pac.head.<client id>.<head state_dict key>"


@dataclass
class FedPACHParams:
    lam: float = param(1.0, lo=0.0, hi=1e4, doc="weight of the feature-alignment (MSE to global prototype) term")
    head_epochs: int = param(1, lo=0, hi=1000, doc="epochs on the personal head with the body frozen (first phase)")
    head_lr_scale: float = param(10.0, lo=0.0, hi=1000.0, lo_open=True,
                                 doc="head lr = scale * train.lr (authors' code: 0.1 head vs 0.01 body)")
    weight_eps: float = param(1e-3, lo=0.0, hi=0.5,
                              doc="combination weights below this are zeroed, the rest renormalised")
    qp_iters: int = param(2000, lo=1, hi=100_000, doc="accelerated projected-gradient iterations of the simplex QP")


@register_algorithm
class FedPAC(Algorithm[FedPACHParams]):
    """FedPAC.

    Shared: the body (every ``body.*`` tensor), sample-weighted averaged, and global class
    prototypes. Personal: the head (``head.*``), whose copy after training travels to the server
    for the classifier collaboration. Upload: body tensors, head tensors, ``proto.means`` (C, d),
    ``proto.counts`` (C,), ``pac.var`` (1,) (the variance statistic V_i) (the sender's id travels as
    ``ClientUpdate.client_id``).
    Server state: body, ``proto.means``, ``proto.available`` and, for every client the server has
    recombined a head for, ``pac.head.<id>.<head key>``. Client i receives (``for_client``) the
    body, the prototypes and only its own ``pac.head.<i>.*``.

    Local update (authors' order): load the global body and this client's head (its recombined
    head if the server has one, else its own); ``head_epochs`` epochs on the head with the body
    frozen (lr scaled by ``head_lr_scale``); then ``train.local_epochs`` epochs on the body with the
    head frozen, loss ``CE + lam * MSE(f(x), c_y)`` with c_y the global prototype of the label (no
    term before prototypes exist). Then, with the new body on the training split: class
    prototypes mu_k, counts n_k, ``h_k = (n_k / n) mu_k`` and
    ``V = (1/n) sum_k [(n_k/n) tr E[z z^T | k] - (n_k/n)^2 ||mu_k||^2]``.

    Server: average bodies; aggregate prototypes (sample-weighted); for each uploader i solve
    ``min_{alpha in simplex} sum_j alpha_j^2 V_j + ||sum_j alpha_j (h_i - h_j)||_F^2``
    (`head_combination_weights`; solved here by accelerated projected gradient instead of the
    authors' cvxpy call), zero weights below ``weight_eps``, renormalise, and store
    ``sum_j alpha_ij head_j`` as client i's head. Classes without a global prototype get no
    alignment term (the code substitutes the client's local prototype, which is the same after
    the first round since the client's own prototype enters the global one).
    """

    name = "fedpac"
    key_prefix = "pac."
    shared_prefixes = (P.PREFIX,)
    paper = ("Xu, Tong, Huang, Personalized Federated Learning with Feature Alignment and Classifier "
             "Collaboration, ICLR 2023")
    shares = "body (averaged), class prototypes, head + variance statistic (for the server-side head combination)"
    keeps = "head (replaced by the server's convex combination of heads)"

    def setup(self) -> None:
        self.head_keys = self.keys("head")
        self.body_keys = self.keys("body")
        self._initial_head = self.snapshot(self.head_keys)

    # ----- server -------------------------------------------------------------------------
    def init_server(self) -> Payload:
        return {**self.snapshot(self.body_keys), **P.empty_prototypes(self.num_classes, self.model.feature_dim)}

    def aggregate(self, server: Payload, updates: list[ClientUpdate], round: int) -> Payload:
        if not updates:
            return server
        ups = [u.upload for u in updates]
        out = dict(server)
        out.update(weighted_average([{k: u[k] for k in self.body_keys} for u in ups], [u.weight for u in updates]))
        out[P.MEANS], out[P.AVAILABLE] = P.aggregate_prototypes(
            [u[P.MEANS] for u in ups], [u[P.COUNTS] for u in ups], server[P.MEANS], server[P.AVAILABLE], "samples")
        hrefs = torch.stack([u[P.MEANS].double() * (u[P.COUNTS].double() / u[P.COUNTS].sum().clamp_min(1))[:, None]
                             for u in ups])
        variances = torch.cat([u[VAR].double().reshape(1) for u in ups])
        alpha = head_combination_weights(variances, hrefs, self.hp.weight_eps, self.hp.qp_iters)
        for i, u in enumerate(ups):
            cid = updates[i].client_id
            for key in self.head_keys:
                stacked = torch.stack([v[key] for v in ups])
                if stacked.is_floating_point():
                    mixed = torch.einsum("j,j...->...", alpha[i].to(stacked), stacked)
                else:
                    mixed = u[key].clone()
                out[f"{COMBINED}{cid}.{key}"] = mixed
        return out

    def for_client(self, broadcast: Payload, client_id: int) -> Payload:
        """The body, the global prototypes and only this client's combined head."""
        own = f"{COMBINED}{client_id}."
        return {k: v for k, v in broadcast.items() if not k.startswith(COMBINED) or k.startswith(own)}

    # ----- client -------------------------------------------------------------------------
    def init_client(self, data: ClientData) -> Payload:
        return clone_payload(self._initial_head)

    def _load_personal(self, broadcast: Payload, state: Payload, client_id: int) -> None:
        """Global body, then the client's head: the server's recombined one if it has one."""
        self.load({k: broadcast[k] for k in self.body_keys})
        self.load(state)
        prefix = f"{COMBINED}{client_id}."
        self.load({k[len(prefix):]: v for k, v in broadcast.items() if k.startswith(prefix)})

    def local_update(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> ClientUpdate:
        self._load_personal(broadcast, state, ctx.client_id)
        model, lam = self.model, self.hp.lam
        metrics: dict[str, float] = {}
        if self.hp.head_epochs > 0:
            metrics["head_loss"] = train_epochs(
                model, data.x_train, data.y_train, self.train, ctx.generator,
                params=parameters_named(model, self.head_keys), epochs=self.hp.head_epochs,
                lr=self.train.lr * self.hp.head_lr_scale)
        targets, available = broadcast[P.MEANS], broadcast[P.AVAILABLE]

        loss_fn = P.prototype_regularised_ce(model, lam, targets, available)

        metrics["body_loss"] = train_epochs(model, data.x_train, data.y_train, self.train, ctx.generator,
                                            params=parameters_named(model, self.body_keys), loss_fn=loss_fn)
        metrics["train_loss"] = metrics["body_loss"]
        z = features_in_batches(model, data.x_train)
        means, counts = P.class_prototypes(z, data.y_train, self.num_classes)
        var = feature_variance(z, data.y_train, self.num_classes)
        upload = {**self.snapshot(self.body_keys), **self.snapshot(self.head_keys),
                  P.MEANS: means, P.COUNTS: counts,
                  VAR: torch.tensor([var], dtype=torch.float32)}
        return ClientUpdate(upload=upload, weight=data.num_train, state=self.snapshot(self.head_keys), metrics=metrics)

    def personal_predictor(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> Predictor:
        self._load_personal(broadcast, state, ctx.client_id)
        self.model.eval()
        return self.model


def feature_variance(z: torch.Tensor, y: torch.Tensor, num_classes: int) -> float:
    """FedPAC's variance statistic of one client, the variance of its estimate of ``h``:

        V = (1/n) sum_k [ p_k tr(E[z z^T | y=k]) - p_k^2 ||mu_k||^2 ],   p_k = n_k / n

    Args:
        z: (n, d) features. y: (n,) labels.
    Returns:
        V >= 0 (0 for an empty set).
    """
    n = z.shape[0]
    if n == 0:
        return 0.0
    z = z.double()
    counts = torch.bincount(y, minlength=num_classes).double()
    p = counts / n
    sums = torch.zeros(num_classes, z.shape[1], dtype=z.dtype, device=z.device).index_add_(0, y, z)
    mu = sums / counts.clamp_min(1)[:, None]
    sq = torch.zeros(num_classes, dtype=z.dtype, device=z.device).index_add_(0, y, (z * z).sum(1))
    second = sq / counts.clamp_min(1)  # tr E[z z^T | k]
    return float(((p * second) - p**2 * (mu * mu).sum(1)).sum() / n)


def head_combination_weights(variances: torch.Tensor, hrefs: torch.Tensor, eps: float = 1e-3,
                             iters: int = 2000) -> torch.Tensor:
    """FedPAC's classifier-collaboration weights, one simplex row per client.

    Row i minimises ``alpha^T (diag(V) + D_i) alpha`` over the probability simplex, where
    ``D_i[j, l] = sum_k <h_ik - h_jk, h_ik - h_lk>``; i.e. variance ``sum_j alpha_j^2 V_j`` plus
    squared bias ``||h_i - sum_j alpha_j h_j||_F^2``. Weights below ``eps`` are zeroed and the row
    renormalised (as in the authors' aggregation).

    Args:
        variances: (K,) V_j >= 0. hrefs: (K, C, d) h_j (class-prior-weighted class means).
        eps: threshold for zeroing small weights. iters: projected-gradient iterations.
    Returns:
        (K, K) float64, rows non-negative and summing to 1.
    """
    v = variances.double().cpu().clamp_min(0)
    h = hrefs.double().cpu().flatten(1)  # (K, C*d)
    k = h.shape[0]
    delta = h[:, None, :] - h[None, :, :]  # (K_i, K_j, C*d): h_i - h_j
    q = torch.diag(v)[None] + delta @ delta.transpose(1, 2)  # (K, K, K)
    alpha = solve_simplex_qps(q, iters)
    alpha = torch.where(alpha < eps, torch.zeros_like(alpha), alpha)
    total = alpha.sum(1, keepdim=True)
    fallback = torch.eye(k, dtype=alpha.dtype)  # all weights cut: keep the local head only
    return torch.where(total > 0, alpha / total.clamp_min(1e-300), fallback)


def solve_simplex_qp(q: torch.Tensor, iters: int = 2000) -> torch.Tensor:
    """argmin of ``a^T q a`` over the probability simplex, q (K, K) symmetric PSD -> (K,) float64."""
    return solve_simplex_qps(q[None], iters)[0]


def solve_simplex_qps(q: torch.Tensor, iters: int = 2000) -> torch.Tensor:
    """A batch of simplex QPs: row b of the result minimises ``a^T q_b a`` over the simplex.

    Accelerated projected gradient (FISTA, step 1 / (2 lambda_max(q_b)), started at the uniform
    vector); a row whose objective would go up takes a plain projected-gradient step instead and
    restarts its momentum, so every row's objective never increases.

    Args:
        q: (B, K, K) symmetric positive semi-definite. iters: maximum iterations.
    Returns:
        (B, K) float64, each row on the simplex.
    """
    q = 0.5 * (q.double() + q.double().transpose(1, 2))
    b, k, _ = q.shape
    lip = 2.0 * torch.linalg.eigvalsh(q).amax(-1).clamp_min(1e-300)[:, None]  # (B, 1)

    # (q * a[:, None, :]).sum(-1) is q @ a written element-wise: for these tiny matrices a BLAS
    # batched product costs far more in thread synchronisation than in arithmetic.
    def objective(a: torch.Tensor) -> torch.Tensor:
        return (a * (q * a[:, None, :]).sum(-1)).sum(-1)

    def step(a: torch.Tensor) -> torch.Tensor:
        return project_to_simplex(a - 2.0 * (q * a[:, None, :]).sum(-1) / lip)

    x = torch.full((b, k), 1.0 / k, dtype=torch.float64)
    y, t, obj = x.clone(), torch.ones(b, 1, dtype=torch.float64), objective(x)
    for it in range(iters):
        x_acc = step(y)
        obj_acc = objective(x_acc)
        worse = (obj_acc > obj)[:, None]
        x_new = torch.where(worse, step(x), x_acc)
        t_new = torch.where(worse, torch.ones_like(t), 0.5 * (1.0 + torch.sqrt(1.0 + 4.0 * t * t)))
        y = x_new + torch.where(worse, torch.zeros_like(t), (t - 1.0) / t_new) * (x_new - x)
        done = it % 50 == 49 and float((x_new - x).abs().max()) < 1e-13
        x, t, obj = x_new, t_new, objective(x_new)
        if done:
            break
    return x


def project_to_simplex(v: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of each row of v (..., K) onto {a : a >= 0, sum a = 1} (sort-based)."""
    u, _ = torch.sort(v, dim=-1, descending=True)
    css = torch.cumsum(u, -1) - 1.0
    idx = torch.arange(1, v.shape[-1] + 1, dtype=v.dtype, device=v.device)
    rho = ((u - css / idx) > 0).sum(-1, keepdim=True) - 1  # last index where the condition holds
    theta = css.gather(-1, rho) / (rho + 1).to(v.dtype)
    return (v - theta).clamp_min(0)
