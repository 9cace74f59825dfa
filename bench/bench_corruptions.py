"""ImageNet-C corruptions on the fly: the reference's time, ours (batched) and one ResNet-50 forward, per image.

    .venv/bin/python bench/bench_corruptions.py [--images 16] [--severity 3] [--repeats 2] [--threads N]
                                                [--device cpu]

On ``--images`` 224-px crops of the shared sample images (Resize 256 + CenterCrop 224), for each of the 19
corruptions at ``--severity``: the reference package's time per image (imagecorruptions-imaug, one image at a
time as it works: numpy uint8 HWC in, uint8 out), ours on the whole batch (random numbers drawn per image from its
own generator, then the batched pixel work, returned on the device), and their ratio; and, in the same run, one
ResNet-50 forward per image (random init, fp32, channels_last, inference mode, the batch at once): the cost of
the classifier evaluation that each corrupted crop feeds. Every time is the best of ``--repeats`` passes, the
passes of reference, ours and the forward alternating so that a change of machine load touches them alike. The
reference's first call of each corruption (numba's compilation of glass_blur, frost's picture reads) runs before
the timing, as does ours. Absolute times on a shared machine drift; the ratios are what to compare.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import torch

from _common import machine, progress, targets_table, timed

SPEEDUP_TARGET = 3.0  # each corruption at least 3x faster than the reference, per image
SHARE_TARGET = 0.25  # all 19 together under 25% of the 19 forwards they feed


def crops(n: int) -> torch.Tensor:
    from robustbench_ibn.data import ImageNetVal

    from _common import SAMPLE_VAL

    dataset = ImageNetVal(SAMPLE_VAL)
    step = max(len(dataset) // n, 1)
    return torch.stack([dataset[i * step][0] for i in range(n)]).float().div(255)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--severity", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import imagecorruptions
    import torchvision

    from robustbench_ibn.transforms.corruptions import CORRUPTIONS, STOCHASTIC, corrupt

    device = torch.device(args.device)
    print(machine())
    progress(f"loading {args.images} crops")
    x = crops(args.images).to(device)
    arrays = x.mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    net = torchvision.models.resnet50().eval().to(device, memory_format=torch.channels_last)
    n = len(x)

    def forward() -> None:
        with torch.inference_mode():
            net(x.contiguous(memory_format=torch.channels_last))

    def ours(name: str) -> Callable[[], object]:
        def run() -> object:
            gens = [torch.Generator().manual_seed(i) for i in range(n)] if name in STOCHASTIC else None
            return corrupt(x, name, args.severity, gens)

        return run

    def reference(name: str) -> Callable[[], object]:
        return lambda: [imagecorruptions.corrupt(a, corruption_name=name, severity=args.severity) for a in arrays]

    np.random.seed(0)
    forward()
    forward_times: list[float] = []
    rows = []
    for name in CORRUPTIONS:
        progress(f"{name} (severity {args.severity})")
        imagecorruptions.corrupt(arrays[0], corruption_name=name, severity=args.severity)  # compile, read pictures
        ours(name)()
        ref_t: list[float] = []
        our_t: list[float] = []
        for _ in range(args.repeats):
            ref_t.append(timed(reference(name), device))
            our_t.append(timed(ours(name), device))
            forward_times.append(timed(forward, device))
        rows.append((name, min(ref_t) / n, min(our_t) / n))
    fwd = min(forward_times) / n

    print(f"\nper image, severity {args.severity}, {n} images, best of {args.repeats}; ResNet-50 forward "
          f"{fwd * 1e3:.1f} ms/image")
    print(f"{'corruption':<18} {'reference ms':>12} {'ours ms':>9} {'speed-up':>9} {'ours/forward':>13}")
    for name, ref, our in rows:
        print(f"{name:<18} {ref * 1e3:12.1f} {our * 1e3:9.1f} {ref / our:8.1f}x {our / fwd:12.1%}")
    total = sum(our for _, _, our in rows)
    share = total / (len(rows) * fwd)
    slow = [name for name, ref, our in rows if ref / our < SPEEDUP_TARGET]
    print(f"all {len(rows)}: ours {total * 1e3:.1f} ms/image against {len(rows)} forwards {len(rows) * fwd * 1e3:.1f} "
          f"ms/image; reference {sum(ref for _, ref, _ in rows) * 1e3:.1f} ms/image\n")
    print(targets_table([
        ("19 corruptions / 19 forwards", f"{share:.1%}", f"< {SHARE_TARGET:.0%}", share < SHARE_TARGET),
        ("corruptions >= 3x the reference", f"{len(rows) - len(slow)} of {len(rows)}", f"{len(rows)} of {len(rows)}",
         not slow),
        ("below 3x", ", ".join(slow) or "none", None, None),
    ]))


if __name__ == "__main__":
    main()
