"""Models: a registry of body/head split classifiers."""

from pfedkit.models import cnn  # noqa: F401  (registers "cnn")
from pfedkit.models.registry import build_model, model_names, register_model
from pfedkit.models.split import SplitModel

__all__ = ["SplitModel", "build_model", "model_names", "register_model"]
