"""pfedkit: personalized federated learning, simulated in-process or deployed on Flower.

The public surface (everything else is private by convention)::

    import pfedkit
    cfg = pfedkit.load_config("configs/demo.yaml", ["algorithm=fedrep"])
    result = pfedkit.run(cfg)                                   # one algorithm, one seed
    runs = pfedkit.compare(cfg, ["local", "fedavg_ft", "fedrep"], seeds=[0, 1, 2])

A new method is one file: a subclass of `Algorithm` decorated with `register_algorithm`
(``docs/extending.md``).
"""

__version__ = "0.1.0"

from pfedkit.algorithms.protocol import Algorithm, ClientUpdate, NoHParams, RoundContext  # noqa: E402
from pfedkit.algorithms.registry import algorithm_names, register_algorithm  # noqa: E402
from pfedkit.algorithms.toolkit import training as _training  # noqa: E402,F401  (declares train.optimizer)
from pfedkit.core.config import RunConfig, TrainSettings, load_config, param  # noqa: E402
from pfedkit.core.errors import ConfigError, PfedkitError  # noqa: E402
from pfedkit.data.partition import registry as _partitions  # noqa: E402,F401  (declares partition.scheme)
from pfedkit.models import build_model, model_names, register_model  # noqa: E402

__all__ = [
    "Algorithm", "ClientUpdate", "ConfigError", "NoHParams", "PfedkitError", "RoundContext", "RunConfig",
    "TrainSettings", "algorithm_names", "build_model", "load_config", "model_names", "param",
    "register_algorithm", "register_model",
]
