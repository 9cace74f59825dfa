"""Classifier heads that are not ImageNet-1k: how many outputs a model has, and mapping them onto the 1000 classes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..options import on_command_line

__all__ = ["IMAGENET_CLASSES", "ClassMapped", "apply_class_map", "num_outputs"]

IMAGENET_CLASSES = 1000
_TOPK = 5  # the benchmark keeps top-5 predictions: fewer real candidates would make top-5 error meaningless
_HEAD_NAMES = ("fc", "classifier", "head", "heads")


def num_outputs(model: nn.Module) -> int | None:
    """Number of classifier outputs when it can be read without a forward pass, else ``None``.

    Reads a ``num_classes`` attribute (timm) or a Linear head under a conventional name (``fc``, ``classifier``,
    ``head``, ``heads``; possibly the last entry of a Sequential: torchvision, the IBN-Net zoo), or the last entry of
    a Sequential model. Anything else is left to the runner, which checks the logits of the first batch.
    """
    count = getattr(model, "num_classes", None)
    if isinstance(count, int) and not isinstance(count, bool):
        return count
    heads = [getattr(model, attr, None) for attr in _HEAD_NAMES] + [model if isinstance(model, nn.Sequential) else None]
    for head in heads:
        if isinstance(head, nn.Sequential) and len(head):
            head = head[-1]
        if isinstance(head, nn.Linear):
            return head.out_features
    return None


class ClassMapped(nn.Module):
    """Scatter a classifier's N outputs onto the 1000 ImageNet-1k classes; the other classes get ``-inf``.

    Args:
        model: a classifier with ``len(class_map)`` outputs.
        class_map: for each output, in order, its ImageNet-1k class index (0-999, sorted-wnid order as the labels);
            all distinct, at least 5 (top-5 needs 5 real candidates).
    """

    def __init__(self, model: nn.Module, class_map: Sequence[int]) -> None:
        super().__init__()
        indices = list(class_map)
        bad = [i for i in indices if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < IMAGENET_CLASSES]
        if bad or len(set(indices)) != len(indices) or len(indices) < _TOPK:
            raise ValueError(
                f"Expected class_map to be at least {_TOPK} distinct ImageNet-1k class indices (ints in 0-"
                f"{IMAGENET_CLASSES - 1}), one per model output, but got {len(indices)} entries"
                + (f" with invalid {bad[:5]}" if bad else "")
                + (" with duplicates" if len(set(indices)) != len(indices) else "") + "."
            )
        self.model = model
        self.register_buffer("class_map", torch.tensor(indices, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        if logits.ndim != 2 or logits.shape[1] != len(self.class_map):
            raise ValueError(
                f"Expected the model to output [B, {len(self.class_map)}] logits (one per class_map entry), "
                f"but got {tuple(logits.shape)}."
            )
        out = logits.new_full((logits.shape[0], IMAGENET_CLASSES), float("-inf"))
        out[:, self.class_map] = logits
        return out


def apply_class_map(model: nn.Module, class_map: Sequence[int] | None, name: str) -> nn.Module:
    """``model`` itself when it has 1000 outputs (or they cannot be read), wrapped in :class:`ClassMapped` when a
    class map is given; a known non-1000 head without a map is an error that says how to give one."""
    outputs = num_outputs(model)
    if class_map is None:
        if outputs is not None and outputs != IMAGENET_CLASSES:
            how = ("--model-kwargs 'class_map=[i0,i1,...]'" if on_command_line() else
                   "model_kwargs={'class_map': [i0, i1, ...]}, or create_model(..., class_map=[...])")
            raise ValueError(
                f"Expected model {name!r} to classify the {IMAGENET_CLASSES} ImageNet-1k classes, but it has "
                f"{outputs} outputs. Give the ImageNet-1k index of each output with class_map ({how}), or use a "
                f"model with an ImageNet-1k classifier."
            )
        return model
    mapped = ClassMapped(model, class_map)  # validates the map itself first
    if outputs is not None and outputs != len(class_map):
        raise ValueError(
            f"Expected class_map to have one entry per output of model {name!r} ({outputs}), but got {len(class_map)}."
        )
    return mapped
