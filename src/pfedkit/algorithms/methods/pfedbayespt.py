"""pFedBayesPT (Ye et al., "Towards Instance-wise Personalized Federated Learning via
Semi-Implicit Bayesian Prompt Tuning", CIKM 2025, arXiv 2508.19621): every image gets its own
visual prompt, drawn from a semi-implicit posterior conditioned on the image, on a frozen ViT.
``docs/pfedbayespt.md`` says which parts are the paper's words (instance-wise prompts, Bayesian
prompt generation, implicit posterior, SIVI objective) and which are our reading.

Components (each named code):
  * frozen ViT taking per-sample prompts (`pfedkit.models.prompted.PromptedClassifier`), e(x)
    = prompt-free [CLS] cached once per client (`toolkit.frozen_features`);
  * implicit mixing network psi = T_phi(e(x), eps) with injected noise and a low-rank output,
    explicit Gaussian layer N(p; psi, diag sigma(x)^2), learnable shared prior mean mu_0
    (`pfedkit.models.prompt_posterior.SemiImplicitPromptPosterior`);
  * the SIVI surrogate bound with K extra mixing draws, log-sum-exp mixture
    (`pfedkit.stats.sivi`), KL weight warmed up over rounds and normalised by the prompt size
    (`kl_weight`);
  * the S-sample Bayesian predictive, and the S = 1 and mean-prompt variants (``predict``).

Shared (FedAvg, weighted by training samples): the generator (T_phi, S_phi, mu_0) as
``bpt.gen.*`` and, with ``head = shared``, the head. Personal: the head with ``head = local``
(the default: it won on validation in ``bench bpt-ablation``).
The model's own shared prompt tokens are unused (every image gets a generated prompt) and never
travel; the frozen backbone is not part of any payload.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from pfedkit.algorithms.protocol import Algorithm, ClientUpdate, Predictor, RoundContext
from pfedkit.algorithms.registry import register_algorithm
from pfedkit.algorithms.toolkit.frozen_features import frozen_features
from pfedkit.algorithms.toolkit.prompting import PromptedOnly
from pfedkit.algorithms.toolkit.training import train_epochs
from pfedkit.core.config import param
from pfedkit.core.payload import Payload, clone_payload
from pfedkit.core.seeding import built_with_seed, derive_seed
from pfedkit.data.client_data import ClientData
from pfedkit.models.prompt_posterior import SemiImplicitPromptPosterior, bayes_predictive
from pfedkit.models.prompted import PromptedClassifier
from pfedkit.stats.sivi import kl_weight

GEN = "bpt.gen."  # the prompt generator's state_dict: mixing.*, explicit.*, prior_mean
_EVAL_TAG = 0xB9E7


@dataclass
class PFedBayesPTHParams:
    posterior: str = param("semi_implicit", choices=("semi_implicit", "explicit", "deterministic"),
                           doc="semi-implicit (the method); explicit-only Gaussian amortised VI; deterministic "
                               "instance generator (no prior, no KL) — spec §7 ablations")
    K: int = param(8, lo=0, hi=1024, doc="extra mixing draws in the SIVI bound during training")
    samples: int = param(8, lo=1, hi=1024, doc="S, prompt samples of the Bayesian predictive")
    predict: str = param("bayes", choices=("bayes", "single", "mean"),
                         doc="S-sample predictive average, one sample (S = 1), or the mean prompt (eps = xi = 0)")
    kl_weight: float = param(1.0, lo=0.0, hi=1e6, doc="beta before normalising by the prompt size L*D")
    kl_warmup: int = param(5, lo=0, hi=100_000, doc="rounds over which beta rises linearly from 0")
    head: str = param("local", choices=("shared", "local"),
                      doc="personal head (default: it won on validation in bench bpt-ablation, 38.3 vs 28.9 %) "
                          "or a head averaged with the generator")
    noise_dim: int = param(16, lo=1, hi=4096, doc="m, size of the injected noise eps")
    hidden: int = param(128, lo=1, hi=65536, doc="hidden width of T_phi")
    rank: int = param(16, lo=1, hi=4096, doc="low-rank bottleneck of T_phi and S_phi")
    prior_std: float = param(1.0, lo=0.0, hi=1e3, lo_open=True, doc="s_0 of the prior N(mu_0, s_0^2 I)")
    sigma_init: float = param(0.1, lo=0.0, hi=10.0, lo_open=True, doc="initial std of the explicit layer")


@register_algorithm
class PFedBayesPT(PromptedOnly, Algorithm[PFedBayesPTHParams]):
    """pFedBayesPT; see the module docstring.

    Local update: load generator (and head); for ``train.local_epochs`` epochs over the training
    split, per batch: e = cached e(x); one prompt sample p per image with K extra mixing draws;
    loss = mean over the batch of -(log p(y | x, p) + beta * (log p_0(p) - log mixture_K(p)));
    generator and head train, the backbone is frozen. Upload generator (and shared head).
    Prediction: e(x) of the evaluated images, then the predictive of ``predict``.
    """

    name = "pfedbayespt"
    key_prefix = "bpt."
    shares = ("the instance-wise prompt generator (T_phi, S_phi, mu_0) (FedAvg; + the head with head = shared); "
              "the frozen ViT never travels")
    keeps = "the head (head = local, default) or nothing (head = shared)"
    paper = ("Ye et al., Towards Instance-wise Personalized Federated Learning via Semi-Implicit Bayesian "
             "Prompt Tuning, CIKM 2025")

    def setup(self) -> None:
        super().setup()  # PromptedOnly refused any model without prompt tokens
        model = self.model
        assert isinstance(model, PromptedClassifier)
        self.prompt_shape = model.body.shape(1)[1:]  # (L, D) or (depth, L, D)
        dim = model.feature_dim
        num_tokens = int(torch.tensor(self.prompt_shape[:-1]).prod())
        hp = self.hp
        self.posterior = built_with_seed(derive_seed(self.seed, 0xB4E5), lambda: SemiImplicitPromptPosterior(
            dim, num_tokens, dim, noise_dim=hp.noise_dim, hidden=hp.hidden, rank=hp.rank,
            prior_std=hp.prior_std, sigma_init=hp.sigma_init, implicit=hp.posterior == "semi_implicit",
            stochastic=hp.posterior != "deterministic"))
        self.head_keys = self.keys("head")
        self._initial_head = self.snapshot(self.head_keys)

    # ----- payload <-> generator ------------------------------------------------------------
    def generator_payload(self) -> Payload:
        return {GEN + k: v.detach().clone() for k, v in self.posterior.state_dict().items()}

    def load_generator(self, payload: Payload) -> None:
        self.posterior.to(self.model.head.weight.device)
        self.posterior.load_state_dict({k[len(GEN):]: v for k, v in payload.items() if k.startswith(GEN)})

    def _shared_head(self) -> list[str]:
        return self.head_keys if self.hp.head == "shared" else []

    # ----- server -------------------------------------------------------------------------
    def init_server(self) -> Payload:
        return {**self.generator_payload(), **self.snapshot(self._shared_head())}

    # ----- client -------------------------------------------------------------------------
    def init_client(self, data: ClientData) -> Payload:
        return clone_payload(self._initial_head) if self.hp.head == "local" else {}

    def _load(self, broadcast: Payload, state: Payload) -> None:
        self.load_generator(broadcast)
        self.load(broadcast)  # the shared head (if any)
        self.load(state)  # the local head (if any)

    def local_update(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> ClientUpdate:
        self._load(broadcast, state)
        model, posterior, hp = self.model, self.posterior, self.hp
        e_train = frozen_features(model, data, "train")
        numel = int(torch.tensor(self.prompt_shape).prod())
        beta = 0.0 if hp.posterior == "deterministic" else kl_weight(ctx.round, hp.kl_warmup, hp.kl_weight, numel)
        x_train = data.x_train
        terms = {"nll": torch.zeros(()), "kl": torch.zeros(())}

        def loss_fn(idx: Tensor, y: Tensor) -> Tensor:
            sample = posterior.sample(e_train[idx], hp.K, ctx.generator)
            prompts = sample.prompt.reshape(len(idx), *self.prompt_shape)
            nll = F.cross_entropy(model.head(model.prompted_features(x_train[idx], prompts)), y, reduction="none")
            kl = posterior.kl_term(sample)
            terms["nll"] = terms["nll"] + nll.detach().mean().cpu()
            terms["kl"] = terms["kl"] + kl.detach().mean().cpu()
            return (nll - beta * kl).mean()

        params = list(posterior.parameters()) + [p for n, p in model.named_parameters() if n in self.head_keys]
        index = torch.arange(data.num_train, device=x_train.device)
        posterior.train()
        loss = train_epochs(model, index, data.y_train, self.train, ctx.generator, params=params, loss_fn=loss_fn)
        upload = {**self.generator_payload(), **self.snapshot(self._shared_head())}
        new_state = self.snapshot(self.head_keys) if hp.head == "local" else {}
        return ClientUpdate(upload=upload, weight=data.num_train, state=new_state,
                            metrics={"train_loss": loss, "beta": beta})

    def personal_predictor(self, broadcast: Payload, state: Payload, data: ClientData, ctx: RoundContext) -> Predictor:
        self._load(broadcast, state)
        model, posterior, hp = self.model, self.posterior, self.hp
        model.eval()
        posterior.eval()
        rng = torch.Generator().manual_seed(derive_seed(self.seed, ctx.round, ctx.client_id, _EVAL_TAG))

        def predict(x: Tensor) -> Tensor:
            e = model.frozen_features(x)
            if hp.predict == "mean":
                prompts = posterior.mean_prompt(e).reshape(len(x), *self.prompt_shape)
                return torch.log_softmax(model.head(model.prompted_features(x, prompts)), dim=-1)
            s = 1 if hp.predict == "single" else hp.samples
            draws = posterior.predictive_samples(e, s, rng)  # (S, B, tokens, D)
            logits = torch.stack([model.head(model.prompted_features(x, p.reshape(len(x), *self.prompt_shape)))
                                  for p in draws])
            return bayes_predictive(logits)

        return predict
