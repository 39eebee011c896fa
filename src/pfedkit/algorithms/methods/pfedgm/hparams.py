"""pFedGM's hyper-parameters (``hp.pfedgm.*``); the flags table is in ``docs/pfedgm.md``."""

from __future__ import annotations

from dataclasses import dataclass

from pfedkit.algorithms.methods.pfedgm.navigator import NAVIGATOR_COORDS
from pfedkit.core.config import param
from pfedkit.core.errors import ConfigError


@dataclass
class PFedGMHParams:
    lambda_local: float = param(0.1, lo=0.0, hi=100.0, doc="weight of the local objective L_local (spec §3)")
    virtual_weight: float = param(1.0, lo=0.0, hi=100.0, doc="weight of the CE on the generator's virtual features")
    bank_size: int = param(32, lo=0, hi=100_000, doc="virtual features per class sent each round (B)")
    resample_tau: float = param(1.0, lo=0.0, hi=10.0, doc="re-sampling weights w_kc ∝ n_kc^tau (spec §2)")
    navigator: bool = param(True, doc="train through the navigator; false = ablation: linear head + CE")
    navigator_coords: str = param("logit_weights", choices=NAVIGATOR_COORDS,
                                  doc="what the optimiser steps on: the navigator's logit weights exp(s) m_c and s "
                                      "(a linear head's step size, default) or the anchors m_c and s (steps exp(2s) "
                                      "times larger on the logits); the logits are the same")
    navigator_step: float = param(1.0, lo=0.0, hi=1e4, lo_open=True,
                                  doc="multiplier of the SGD step on the navigator's coordinates, applied by "
                                      "scaling them by 1/sqrt(step) (exact for SGD without weight decay; Adam "
                                      "ignores a constant scale of the gradient, so it moves sqrt(step) as far)")
    navigator_reanchor: bool = param(False, doc="every round, restart the navigator from the global prior (anchors "
                                                "= the filtered global means, as after round 0) instead of the FedAvg "
                                                "of the clients' trained navigators; clients still train it in a round")
    gain: str = param("kalman", choices=("kalman", "global", "local", "interpolate"),
                      doc="local fusion: Kalman gain; fixed K=0 (global means) or K=1 (local means); or "
                          "pFedFDA-style beta chosen by k-fold CV on the client's training split")
    gain_form: str = param("diag", choices=("full", "diag", "scalar"), doc="form of the Kalman gain (spec §5)")
    cv_folds: int = param(2, lo=2, hi=20,
                          doc="folds of the CV that picks beta (gain=interpolate) or kappa (cov_weight=cross_validated)")
    beta_grid: int = param(11, lo=2, hi=1001,
                           doc="grid points in [0, 1] of beta (gain=interpolate) or kappa (cov_weight=cross_validated)")
    global_filter: bool = param(True, doc="Kalman filter over rounds (spec §4); false = plain pooling")
    process_noise: float = param(0.1, lo=0.0, hi=1e6,
                                 doc="q: Q_c = q * tr(Sigma_g)/d * I (in units of the mean within-class variance)")
    noise_source: str = param("innovation", choices=("anchors", "innovation", "none"),
                              doc="added to Q_c: the innovation's excess over its expected size (adaptive, "
                                  "default), the navigator anchors' shift ||m_c' - m_c||^2 / d (spec), or nothing")
    prior_uncertainty: bool = param(True, doc="local fusion prior covariance P_c + U_c + Q_c (adds the global "
                                              "mean's own uncertainty, default); false = the spec's P_c")
    cov_process_noise: float = param(0.01, lo=0.0, hi=1e6, doc="relative process noise of Sigma_g per round")
    predictive: str = param("plugin", choices=("plugin", "student_t"), doc="plug-in Gaussian or NIW predictive")
    head_temperature: float = param(1.0, lo=0.0, hi=1e4, lo_open=True,
                                    doc="T: the head's covariances times T, so the class log-likelihoods are "
                                        "divided by T against the class prior (1 = the spec's head)")
    nu0: float = param(10.0, lo=0.0, hi=1e9, lo_open=True,
                       doc="pseudo-count of Sigma_g: Sigma_k = kappa Sigma_hat_k + (1-kappa) Sigma_g, "
                           "kappa = n_k / (n_k + nu0)")
    cov_weight: str = param("pseudo_count", choices=("pseudo_count", "cross_validated"),
                            doc="kappa_k, the weight of the client's covariance in Sigma_k: n_k / (n_k + nu0) "
                                "(default), or per client the point of a beta_grid grid on [0, 1] with the "
                                "smallest cv_folds-fold CV cross-entropy of the head on its training features")
    a0: float = param(1.0, lo=0.0, hi=1e9, doc="Dirichlet strength of pi_g in the personal class prior")
    shrinkage: float = param(1e-3, lo=0.0, hi=1.0, doc="covariance shrinkage eps towards tr(S)/d * I")
    noise_cov: str = param("local", choices=("local", "fused"),
                           doc="R_kc = Sigma_hat_k / n_kc (spec) or Sigma_k / n_kc (never 0 for one sample)")
    spread_form: str = param("auto", choices=("auto", "full", "diag", "scalar"),
                             doc="how P travels in the broadcast; auto = the gain form's (lossless for it)")

    def __post_init__(self) -> None:
        if self.cov_weight == "cross_validated" and self.gain == "interpolate":
            raise ConfigError("hp.pfedgm.cov_weight=cross_validated and hp.pfedgm.gain=interpolate are both set; "
                              "gain=interpolate's beta already weighs the covariance, so set one of them")
