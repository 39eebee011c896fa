"""Models: a registry of body/head split classifiers, each configured under ``model.<name>.*``."""

from pfedkit.models import cnn, fedavg_cnn, prompted, resnet  # noqa: F401  (register cnn, fedavg_cnn, vit, resnet18)
from pfedkit.models.registry import build_model, model_names, register_model
from pfedkit.models.split import SplitModel

__all__ = ["SplitModel", "build_model", "model_names", "register_model"]
