"""pFedGM (Hu and Ma, "Personalized Federated Learning via Gaussian Generative Modeling",
arXiv 2603.11620, 2026), the method this project exists for: a shared feature extractor
(FedAvg) trained through a navigator of Gaussian class anchors on real and virtual features
drawn from a server-side Gaussian generator, and a personalized Bayesian Gaussian head per
client whose class statistics fuse the client's own (likelihood) with a Kalman-filtered global
prior. The precise formulation is the project's shared spec (not a file in this repository);
``docs/pfedgm.md`` is the in-repo reference: the components and where each lives, which parts
are the paper's words and which our reading, our additions and why, the flags and the payload
keys.

One concept a module: `keys` (payload keys), `hparams`, `navigator` (navigator and the dual
objective), `server` (bank, global fusion, noise model), `client` (statistic extractor, local
fusion, Bayesian head), `algorithm` (the registered `PFedGM`).
"""

from .algorithm import PFedGM
from .client import (
    bayes_head,
    covariance_weight,
    dirichlet_class_prior,
    interpolated_gaussian,
    interpolation_beta,
    personal_gaussian,
    statistic_extractor,
)
from .hparams import PFedGMHParams
from .keys import ANCHORS, BANK_Y, BANK_Z, FILTER, GAIN, LOG_SCALE, PRIOR, PROCESS_NOISE, STATS
from .navigator import NAVIGATOR_COORDS, LogitsFn, Navigator, initial_navigator, local_objective, shared_objective
from .server import global_fusion, innovation_noise, virtual_feature_bank, with_mean_uncertainty

__all__ = [
    "ANCHORS",
    "BANK_Y",
    "BANK_Z",
    "FILTER",
    "GAIN",
    "LOG_SCALE",
    "PRIOR",
    "PROCESS_NOISE",
    "STATS",
    "PFedGMHParams",
    "LogitsFn",
    "NAVIGATOR_COORDS",
    "Navigator",
    "shared_objective",
    "local_objective",
    "initial_navigator",
    "virtual_feature_bank",
    "global_fusion",
    "innovation_noise",
    "with_mean_uncertainty",
    "statistic_extractor",
    "dirichlet_class_prior",
    "interpolated_gaussian",
    "interpolation_beta",
    "covariance_weight",
    "personal_gaussian",
    "bayes_head",
    "PFedGM",
]
