"""Gaussian statistics for feature-space methods (pFedGM, pFedFDA); torch, float64.

Engine- and model-agnostic mathematics: sufficient statistics of labelled features,
pFedGM's Gaussian generator and its moment-matched global prior, the global (across
rounds) and local (per client) Kalman fusion, and Gaussian / Student-t classifiers.
Each module's docstring says which parts are the paper's words and which are our reading.
"""

from pfedkit.stats.fusion import GainForm, PersonalGaussian, interpolate, kalman_gain, local_fusion
from pfedkit.stats.gaussian_head import LOG_PRIOR_FLOOR, GaussianHead, log_class_prior
from pfedkit.stats.generator import (
    GaussianGenerator,
    GlobalPrior,
    SpreadForm,
    fit_generator,
    resampling_weights,
    sample,
)
from pfedkit.stats.kalman import (
    GlobalFilterState,
    anchor_shift_noise,
    filter_pool,
    filter_predict,
    filter_update,
    observation_noise,
)
from pfedkit.stats.student_t import NIWPosterior, StudentTHead, niw_posterior
from pfedkit.stats.sufficient import (
    STATS_DTYPE,
    ClassStats,
    StatsAccumulator,
    batch_stats,
    class_stats,
    merge,
    shrink,
    tied_covariance,
)

__all__ = [
    "STATS_DTYPE",
    "LOG_PRIOR_FLOOR",
    "ClassStats",
    "StatsAccumulator",
    "batch_stats",
    "class_stats",
    "merge",
    "tied_covariance",
    "shrink",
    "GlobalPrior",
    "GaussianGenerator",
    "SpreadForm",
    "resampling_weights",
    "fit_generator",
    "sample",
    "GlobalFilterState",
    "filter_predict",
    "filter_update",
    "filter_pool",
    "observation_noise",
    "anchor_shift_noise",
    "GainForm",
    "PersonalGaussian",
    "kalman_gain",
    "local_fusion",
    "interpolate",
    "GaussianHead",
    "log_class_prior",
    "StudentTHead",
    "NIWPosterior",
    "niw_posterior",
]
