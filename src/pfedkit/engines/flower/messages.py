"""What the pfedkit ServerApp and ClientApp say to each other: message types and record names.

Every instruction carries a ``ConfigRecord`` named `CONTROL` with the round and the client id it
is meant for; ``train`` and ``evaluate`` also carry the client's message (what
``Algorithm.for_client`` returned) as an ``ArrayRecord`` named `PAYLOAD`.

=================  =====================================  =========================================
message type       instruction                            reply
=================  =====================================  =========================================
``query.describe`` control                                `DESCRIPTION` config: client id, held-out
                                                          flag, train size, input shape, classes,
                                                          partition hash
``train``          control, payload                       `UPLOAD` arrays, control (client id,
                                                          weight), `METRICS` metric record
``evaluate``       control, payload                       `EVALUATION` config: correct counts,
                                                          sizes and calibration bins per split,
                                                          per-class test counts and train sizes
=================  =====================================  =========================================
"""

from __future__ import annotations

DESCRIBE = "query.describe"
TRAIN = "train"
EVALUATE = "evaluate"

CONTROL = "pfedkit.control"
PAYLOAD = "pfedkit.payload"
UPLOAD = "pfedkit.upload"
METRICS = "pfedkit.metrics"
DESCRIPTION = "pfedkit.description"
EVALUATION = "pfedkit.evaluation"

STATE = "pfedkit.state"
"""Name of the personal state's ``ArrayRecord`` in the node's ``Context.state``."""
STATE_INFO = "pfedkit.state-info"
"""Name of the ``ConfigRecord`` in ``Context.state`` that says whose state it is."""

CALIB_FIELDS = ("counts", "conf_sum", "correct_sum")
"""The calibration bins' fields (`pfedkit.core.calibration.CalibrationBins.to_dict`)."""
