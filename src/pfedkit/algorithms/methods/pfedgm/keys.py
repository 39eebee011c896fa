"""pFedGM's payload and state keys (all under its ``key_prefix`` ``gm.``); shapes and directions
are listed in ``docs/pfedgm.md`` ("Payload keys")."""

ANCHORS = "gm.nav.anchors"  # (C, d) float32, navigator class anchors m_c
LOG_SCALE = "gm.nav.log_scale"  # () float32, navigator log-scale s
STATS = "gm.stats."  # upload prefix: counts (C,) n_kc, means (C, d) mu_hat_kc, scatter (d, d) S_k
PRIOR = "gm.prior."  # broadcast prefix of the moment-matched, filtered GlobalPrior
BANK_Z = "gm.bank.z"  # (N, d) float32 virtual features
BANK_Y = "gm.bank.y"  # (N,) int64 their classes
FILTER = "gm.filter."  # server-only prefix of the GlobalFilterState
PROCESS_NOISE = "gm.process_noise"  # (C,) float64, server only: Q_c of the latest predict step
GAIN = "gm.gain"  # (C,) client state: mean Kalman gain per class of the last local update
