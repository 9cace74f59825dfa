"""Make a random-init classifier non-degenerate, for tests, benchmarks and analyses without weights."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["calibrate_random_init"]


def calibrate_random_init(
    model: nn.Module, images: torch.Tensor, mean: Sequence[float], std: Sequence[float], chunk: int = 16
) -> nn.Module:
    """Calibrate a random-init network on real ``images`` (float [N, 3, H, W] in [0, 1]) so that it is
    not degenerate.

    Random weights alone give every image the same class. Every BatchNorm's running statistics become
    their average over the images, then each class logit is standardized over them (the final Linear
    rescaled): pooled ReLU features share a large positive mean, which would otherwise hand every image
    the same class. The result is still a random network; it only has data-shaped statistics.
    """
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
    x = (images - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    model.train()
    with torch.no_grad():
        for part in x.split(chunk):
            model(part)
        model.eval()
        logits = torch.cat([model(part) for part in x.split(chunk)])
        mu, sigma = logits.mean(0), logits.std(0).clamp_min(1e-12)
        head.weight /= sigma[:, None]
        if head.bias is not None:
            head.bias.sub_(mu).div_(sigma)
    return model
