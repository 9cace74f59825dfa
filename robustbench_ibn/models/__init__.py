"""Models: the IBN-Net zoo with official keys, the paper's variants, torchvision baselines, a trained
EfficientNet-Lite0 (extra ``lite``), adapters for torchvision / timm / torch.hub backbones, the registry and weights."""

from ._api import (MODELS, ModelInfo, Normalized, PreparedModel, check_model_request, create_model, list_models,
                   model_info, prepare_model, register_model, register_resolver)
from ._classes import ClassMapped
from ..hub import WeightsError
from ._weights import WeightsSource, check_weights, load_weights

# Importing the architecture modules fills the registry; adapters register the tv:/timm:/hub: resolvers.
from . import resnet_ibn, resnext_ibn, se_resnet_ibn, densenet_ibn, torchvision_resnet  # noqa: E402,F401  isort: skip
from . import efficientnet_lite  # noqa: E402,F401  isort: skip  (registers without its optional packages)
from . import adapters  # noqa: E402,F401  isort: skip

__all__ = ["MODELS", "ClassMapped", "ModelInfo", "Normalized", "PreparedModel", "WeightsError", "WeightsSource",
           "check_model_request", "check_weights", "create_model", "list_models", "load_weights", "model_info",
           "prepare_model", "register_model", "register_resolver"]
