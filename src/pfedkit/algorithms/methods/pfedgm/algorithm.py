"""The pFedGM algorithm: the protocol hooks (server state, broadcast, aggregation, local update,
personal predictor) wiring the navigator, server and client pieces together."""

from __future__ import annotations

import torch
from torch import Tensor

from pfedkit.algorithms.methods.pfedgm.batched import local_updates_together
from pfedkit.algorithms.methods.pfedgm.client import _prior_on, bayes_head, personal_gaussian, statistic_extractor
from pfedkit.algorithms.methods.pfedgm.hparams import PFedGMHParams
from pfedkit.algorithms.methods.pfedgm.keys import (
    ANCHORS,
    BANK_Y,
    BANK_Z,
    FILTER,
    GAIN,
    LOG_SCALE,
    PRIOR,
    PROCESS_NOISE,
    STATS,
)
from pfedkit.algorithms.methods.pfedgm.navigator import (
    LogitsFn,
    Navigator,
    initial_navigator,
    local_objective,
    shared_objective,
)
from pfedkit.algorithms.methods.pfedgm.server import (
    global_fusion,
    innovation_noise,
    virtual_feature_bank,
    with_mean_uncertainty,
)
from pfedkit.algorithms.protocol import Algorithm, ClientUpdate, Predictor, RoundContext
from pfedkit.algorithms.registry import register_algorithm
from pfedkit.algorithms.toolkit.dp_sgd import poisson_schedule
from pfedkit.algorithms.toolkit.partial_sharing import parameters_named
from pfedkit.algorithms.toolkit.privacy import STATS_RELEASE, PrivacyLedger, ledger_for
from pfedkit.algorithms.toolkit.training import features_in_batches, train_epochs
from pfedkit.core.payload import Payload, weighted_average
from pfedkit.core.seeding import torch_generator
from pfedkit.data.client_data import ClientData
from pfedkit.stats import (
    STATS_DTYPE,
    ClassStats,
    GlobalFilterState,
    GlobalPrior,
    PersonalGaussian,
    anchor_shift_noise,
    fit_generator,
)
from pfedkit.stats.privacy_accounting import Mechanism

_BANK_TAG = 0xBA4C  # generator key of the virtual-feature bank (do not change: it fixes the banks of a seeded run)


@register_algorithm
class PFedGM(Algorithm[PFedGMHParams]):
    """pFedGM; ``docs/pfedgm.md`` lists the components, payload keys and our readings.

    Round 0 (warm-up): clients upload (n_kc, mu_hat_kc, S_k) under the initial body, no training;
    the server fits the generator, initialises the global filter and the navigator, and samples
    the first virtual-feature bank. Round t >= 1, client: load body and navigator; compute the
    personal means with the received body (for L_local); train body + navigator for
    ``train.local_epochs`` on L_shared + lambda_local * L_local; extract statistics with the
    trained body; upload body, navigator and statistics. Server: FedAvg of body and navigator
    (weights n_k); fit the generator to the uploads; Kalman predict/update of the global prior;
    sample the next bank. Evaluation: the client's statistics are recomputed with the current
    body on its training split and fused with the broadcast prior (no gradient steps).
    """

    name = "pfedgm"
    key_prefix = "gm."
    shares = ("body and navigator (FedAvg); up: class statistics n_kc, mu_hat_kc, S_k; down: the filtered "
              "Gaussian prior and a virtual-feature bank")
    keeps = "nothing persistent: the Gaussian head is rebuilt from the training split and the broadcast prior"
    paper = "Hu and Ma, Personalized Federated Learning via Gaussian Generative Modeling, arXiv 2603.11620, 2026"
    warmup_round = True
    batched = True  # body + navigator training of a round's clients together (pfedgm/batched.py)
    supports_privacy = True  # DP-SGD on body + navigator, noised statistics (docs/privacy.md)

    def setup(self) -> None:
        self.body_keys = self.keys("body")
        self.model_keys = self.body_keys if self.hp.navigator else self.body_keys + self.keys("head")
        self.nav_keys = [ANCHORS, LOG_SCALE] if self.hp.navigator else []
        self.spread_form = self.hp.gain_form if self.hp.spread_form == "auto" else self.hp.spread_form
        if self.privacy.enabled:  # train, fit and release the statistics of features in one ball
            self.model.feature_bound = self.privacy.stats_clip

    # ----- server -------------------------------------------------------------------------
    def init_server(self) -> Payload:
        c, d = self.num_classes, self.model.feature_dim
        server = self.snapshot(self.model_keys)
        if self.hp.navigator:
            server[ANCHORS] = torch.zeros(c, d)
            server[LOG_SCALE] = torch.zeros(())
        server.update(GlobalFilterState.empty(c, d).to_payload(FILTER))
        server[BANK_Z], server[BANK_Y] = torch.zeros(0, d), torch.zeros(0, dtype=torch.int64)
        server[PROCESS_NOISE] = torch.zeros(c, dtype=STATS_DTYPE)
        return server

    def broadcast(self, server: Payload, round: int) -> Payload:
        out = {k: server[k] for k in self.model_keys}
        if round == 0:  # statistics-only round: the clients need the body, nothing else
            return out
        out.update({k: server[k] for k in self.nav_keys})
        prior = self.filter_state(server).to_prior()
        if self.hp.prior_uncertainty:
            prior = with_mean_uncertainty(prior, self.filter_state(server), server[PROCESS_NOISE])
        out.update(prior.to_payload(PRIOR, self.spread_form))
        out[BANK_Z], out[BANK_Y] = server[BANK_Z], server[BANK_Y]
        return out

    def filter_state(self, server: Payload) -> GlobalFilterState:
        """The global filter kept in the server state."""
        return GlobalFilterState.from_payload(server, FILTER)

    def aggregate(self, server: Payload, updates: list[ClientUpdate], round: int) -> Payload:
        ups = [u for u in updates if u.upload]
        if not ups:
            return server
        out = dict(server)
        weights = [max(u.weight, 1e-12) for u in ups]
        shared = [k for k in self.model_keys + self.nav_keys if k in ups[0].upload]
        if shared:
            out.update(weighted_average([{k: u.upload[k] for k in shared} for u in ups], weights))
        stats = [ClassStats.from_payload(u.upload, STATS).to("cpu") for u in ups]
        generator = fit_generator(stats, tau=self.hp.resample_tau, eps=self.hp.shrinkage)
        state = self.filter_state(server)
        first = not bool(state.initialized.any())
        q = self.process_noise(state, generator.prior, server, out)
        state = global_fusion(state, generator.prior, q, self.hp.cov_process_noise, self.hp.global_filter)
        out[PROCESS_NOISE] = q
        prior = state.to_prior()
        if self.hp.navigator and (first or self.hp.navigator_reanchor):
            out[ANCHORS], out[LOG_SCALE] = initial_navigator(prior)
        rng = torch_generator(self.seed, round, _BANK_TAG)
        out[BANK_Z], out[BANK_Y] = virtual_feature_bank(generator, prior, self.hp.bank_size, rng)
        out.update(state.to_payload(FILTER))
        return out

    def process_noise(self, state: GlobalFilterState, observation: GlobalPrior, old: Payload, new: Payload) -> Tensor:
        """Q_c (C,) float64 for this round's predict step (spec §4): q * tr(Sigma_g)/d, plus, by
        ``noise_source``, the anchors' shift ||m_c' - m_c||^2 / d over this round, or the
        innovation's excess `innovation_noise`."""
        base = self.hp.process_noise * float(state.cov.diagonal().mean()) if bool(state.initialized.any()) else 0.0
        q = torch.full((self.num_classes,), base, dtype=STATS_DTYPE)
        if self.hp.noise_source == "anchors" and self.hp.navigator and ANCHORS in new:
            q = q + anchor_shift_noise(old[ANCHORS].cpu(), new[ANCHORS].cpu())
        elif self.hp.noise_source == "innovation":
            q = q + innovation_noise(state, observation)
        return q

    # ----- client -------------------------------------------------------------------------
    def local_update(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> ClientUpdate:
        self.load({k: broadcast[k] for k in self.model_keys})
        model = self.model
        ledger = ledger_for(self, state, data.num_train)
        if ctx.round == 0:  # warm-up: statistics under the initial body, no training
            stats = self.released_stats(data, ledger, ctx)
            return ClientUpdate(upload=stats.to_payload(STATS), weight=ledger.weight(data.num_train, stats),
                                state=ledger.state(state), metrics=ledger.metrics())
        prior = GlobalPrior.from_payload(broadcast, PRIOR)
        metrics: dict[str, float] = {}
        new_state = dict(state)
        personal_means = None
        if self.hp.lambda_local > 0 and data.num_train and ledger.active:
            # the personal means depend on every record, which would leak into every clipped
            # gradient: L_local pulls towards the broadcast prior's means instead
            personal_means = prior.means.to(device=ctx.device, dtype=torch.float32)
        elif self.hp.lambda_local > 0 and data.num_train:
            z0 = features_in_batches(model, data.x_train)
            personal = personal_gaussian(z0, data.y_train.to(z0.device), _prior_on(prior, z0.device), self.hp,
                                         ctx.generator)
            personal_means = personal.means.to(device=ctx.device, dtype=torch.float32)
            new_state[GAIN] = personal.gain.float().cpu()
            held = data.class_counts("train").to(personal.gain.device) > 0
            metrics["mean_gain"] = float(personal.gain[held].mean())
        bank_z = broadcast[BANK_Z].to(ctx.device, torch.float32)
        bank_y = broadcast[BANK_Y].to(ctx.device)
        if self.hp.navigator:
            nav = Navigator.from_payload(broadcast, ctx.device, trainable=True, coords=self.hp.navigator_coords,
                                         step=self.hp.navigator_step)
            logits_fn: LogitsFn = nav.logits
            params = parameters_named(model, self.body_keys) + nav.parameters()
            slots = [(nav, "position"), (nav, "log_scale")]  # trained outside the model (DP-SGD swaps them)
        else:
            nav = None
            logits_fn = model.head
            params = parameters_named(model, self.model_keys)
            slots = []
        lam, vw = self.hp.lambda_local, self.hp.virtual_weight

        def loss_fn(xb: Tensor, yb: Tensor) -> Tensor:
            z = model.features(xb)
            loss = shared_objective(logits_fn, z, yb, bank_z, bank_y, vw)
            if personal_means is not None:
                loss = loss + lam * local_objective(z, yb, personal_means)
            return loss

        metrics["train_loss"] = train_epochs(model, data.x_train, data.y_train, self.train, ctx.generator,
                                             params=params, loss_fn=loss_fn, private=ledger.dp_sgd(slots))
        stats = self.released_stats(data, ledger, ctx)
        upload = {**self.snapshot(self.model_keys), **stats.to_payload(STATS)}
        if nav is not None:
            upload.update(nav.to_payload())
        return ClientUpdate(upload=upload, weight=ledger.weight(data.num_train, stats), state=ledger.state(new_state),
                            metrics=metrics | ledger.metrics())

    def local_updates(self, broadcasts: list[Payload], states: list[Payload], datas: list[ClientData],
                      ctxs: list[RoundContext]) -> list[ClientUpdate]:
        """Round 0 (statistics only, no training) client by client; later rounds batched
        (`pfedgm.batched.local_updates_together`)."""
        if ctxs[0].round == 0:
            return super().local_updates(broadcasts, states, datas, ctxs)
        return local_updates_together(self, broadcasts, states, datas, ctxs)

    def released_stats(self, data: ClientData, ledger: PrivacyLedger, ctx: RoundContext) -> ClassStats:
        """The statistics to upload (on the CPU): the statistic extractor's under the body now in
        the workspace model, noised by ``ledger`` when privacy is on."""
        if not ledger.active:
            return statistic_extractor(self.model, data.x_train, data.y_train, self.num_classes).to("cpu")
        z = features_in_batches(self.model, data.x_train) if data.num_train else torch.zeros(0, self.model.feature_dim)
        return ledger.class_stats(z, data.y_train, self.num_classes, ctx.generator)

    def privacy_plan(self, round: int, num_train: int) -> list[Mechanism]:
        """Round 0: the statistics; later rounds: DP-SGD on body and navigator, then the statistics."""
        if round == 0:
            return [STATS_RELEASE]
        return [poisson_schedule(num_train, self.train.batch_size, self.train.local_epochs), STATS_RELEASE]

    def personal_gaussian_of(self, broadcast: Payload, data: ClientData, ctx: RoundContext) -> PersonalGaussian:
        """The client's personal Gaussian with the broadcast body, recomputed from its training
        split (statistic extractor + local fusion); loads the body into the workspace model."""
        self.load({k: broadcast[k] for k in self.model_keys})
        self.model.eval()
        prior = GlobalPrior.from_payload(broadcast, PRIOR)
        if data.num_train:
            z = features_in_batches(self.model, data.x_train)
            y = data.y_train.to(z.device)
        else:
            z = torch.zeros(0, self.model.feature_dim, device=ctx.device)
            y = torch.zeros(0, dtype=torch.int64, device=ctx.device)
        return personal_gaussian(z, y, _prior_on(prior, z.device), self.hp, ctx.generator)

    def personal_predictor(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> Predictor:
        personal = self.personal_gaussian_of(broadcast, data, ctx)
        head = bayes_head(personal, self.hp.predictive, self.hp.nu0, self.hp.head_temperature)
        model = self.model

        def predict(x: Tensor) -> Tensor:
            return head(model.features(x))

        return predict
