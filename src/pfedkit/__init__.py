"""pfedkit: personalized federated learning, simulated in-process or deployed on Flower.

The public surface (everything else is private by convention)::

    import pfedkit
    cfg = pfedkit.load_config("configs/demo.yaml", ["algorithm=fedrep"])
    result = pfedkit.simulate_config(cfg)                        # one algorithm, one seed
    runs = pfedkit.run_comparison(cfg, ["local", "fedavg_ft", "fedrep"], seeds=[0, 1, 2], out_dir=None)

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
from pfedkit.engines.callbacks import Callback, Checkpointer, EngineState  # noqa: E402
from pfedkit.engines.simulate import SimulationResult, SimulationSettings, Simulator  # noqa: E402
from pfedkit.models import build_model, model_names, register_model  # noqa: E402
from pfedkit.runs.compare import run_comparison  # noqa: E402
from pfedkit.runs.experiment import simulate_config  # noqa: E402

__all__ = [
    "Algorithm", "Callback", "Checkpointer", "ClientUpdate", "ConfigError", "EngineState", "NoHParams",
    "PfedkitError", "RoundContext", "RunConfig", "SimulationResult", "SimulationSettings", "Simulator",
    "TrainSettings", "algorithm_names", "build_model", "load_config", "model_names", "param",
    "register_algorithm", "register_model", "run_comparison", "simulate_config",
]
