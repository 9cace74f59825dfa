"""Shared fixtures: the real images in ../shared/data, and random-init models whose BatchNorm running
statistics are calibrated on those images (random weights alone give one class for every image)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SAMPLE_VAL = SHARED_DATA / "imagenet-sample" / "val"


@pytest.fixture(scope="session")
def sample_val() -> Path:
    """The 500 shared ImageNet val images (ImageFolder layout, half the classes)."""
    if not SAMPLE_VAL.is_dir():
        pytest.fail(f"Expected the shared test images at {SAMPLE_VAL} (../shared/data beside the project root).")
    return SAMPLE_VAL


def few_images(root: Path, n: int, dest: Path) -> Path:
    """An ImageFolder tree at ``dest`` with the first ``n`` class folders of ``root`` (symlinked, no copies)."""
    for class_dir in sorted(root.iterdir())[:n]:
        (dest / class_dir.name).mkdir(parents=True)
        for image in class_dir.iterdir():
            (dest / class_dir.name / image.name).symlink_to(image)
    return dest


@pytest.fixture(scope="session")
def calibration_batch(sample_val: Path) -> torch.Tensor:
    """48 real crops as float [0, 1] (every 10th shared class), the official geometry."""
    from robustbench_ibn.data import ImageNetVal

    dataset = ImageNetVal(sample_val)
    return torch.stack([dataset[i][0] for i in range(0, 480, 10)]).float().div(255)


def calibrate_bn(model: nn.Module, images: torch.Tensor, mean, std) -> nn.Module:
    """Calibrate a random-init ResNet on real ``images`` so that it is not degenerate.

    Every BatchNorm's running statistics become their average over the images. Then the classifier's
    bias is set to cancel the mean logit: pooled ReLU features share a large positive mean, which
    would otherwise hand every image the same class.
    """
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
    x = (images - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    model.train()
    with torch.no_grad():
        for chunk in x.split(16):
            model(chunk)
        model.eval()
        logits = torch.cat([model(chunk) for chunk in x.split(16)])
        mu, sigma = logits.mean(0), logits.std(0)
        model.fc.weight /= sigma[:, None]
        model.fc.bias.sub_(mu).div_(sigma)
    return model


@pytest.fixture(scope="session")
def calibrated_models(calibration_batch: torch.Tensor) -> dict[str, nn.Module]:
    """resnet50 and resnet50_ibn_b with seeded random weights and data-calibrated BN statistics."""
    from robustbench_ibn import create_model

    models = {}
    for name in ("resnet50", "resnet50_ibn_b"):
        model = create_model(name, weights="random", seed=0)
        cfg = model.data_config
        models[name] = calibrate_bn(model, calibration_batch, cfg.mean, cfg.std)
    return models
