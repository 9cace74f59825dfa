"""Models: the IBN-Net family with official keys, torchvision baselines, the registry and weights."""

from ._api import MODELS, ModelInfo, create_model, list_models, model_info, register_model
from ._weights import WeightsSource, load_weights

# Importing the architecture modules fills the registry.
from . import resnet_ibn, torchvision_resnet  # noqa: E402,F401  isort: skip

__all__ = ["MODELS", "ModelInfo", "WeightsSource", "create_model", "list_models", "load_weights", "model_info",
           "register_model"]
