# my_shifts.py: a warm colour cast from a new camera, as a severity family mycast+K
import torch

from robustbench_ibn import Shift, register_transform


class MyCast(Shift):
    """Add K/255 to red and K/510 to green, subtract K/255 from blue; clip to [0, 1]."""

    def __init__(self, k: float):
        super().__init__()
        self.k, self.label = k, f"cast+{k:g}"

    def params(self):
        return {"k": self.k}

    def forward(self, images):
        cast = torch.tensor([1.0, 0.5, -1.0], dtype=images.dtype, device=images.device) * self.k / 255
        return (images + cast.view(1, 3, 1, 1)).clamp(0, 1)


@register_transform("mycast+{k}", identity=0, example=30, param_help="cast strength K on the 0-255 scale")
def mycast(k: float) -> Shift:
    return MyCast(k)
