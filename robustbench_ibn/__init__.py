"""robustbench-ibn: appearance-robustness benchmark for PyTorch image classifiers.

Reproduces Table 1 of IBN-Net (Pan et al., ECCV 2018) for any backbone: top-1/top-5 error on
ImageNet val, clean and under appearance shifts, with the drops.

Example:
    >>> import robustbench_ibn as rb
    >>> "resnet50_ibn_b" in rb.list_models("*ibn_b")
    True
    >>> rb.create_transform("rgb+50").label
    'RGB+50'
"""

__version__ = "0.1.0"

from .data import DataConfig, ImageNetVal
from .engine import RunConfig
from .models import ModelInfo, create_model, list_models, model_info, register_model
from .results import DomainResult, EvalResult
from .runner import evaluate
from .transforms import Shift, create_transform, list_transforms, register_transform

__all__ = [
    "DataConfig",
    "DomainResult",
    "EvalResult",
    "ImageNetVal",
    "ModelInfo",
    "RunConfig",
    "Shift",
    "__version__",
    "create_model",
    "create_transform",
    "evaluate",
    "list_models",
    "list_transforms",
    "model_info",
    "register_model",
    "register_transform",
]
