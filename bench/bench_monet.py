"""Monet shift benchmark: generator throughput, and a cached (second) Monet evaluation against the first.

    .venv/bin/python bench/bench_monet.py [--images 8] [--weights style_monet.pth] [--model resnet18_ibn_b]

Without ``--weights`` the generator has random weights in the official layout (the speed does not depend on
the values). Everything is written to a temporary folder (cache included) and removed afterwards; the model
runs with an explicit random init. Prints absolute times for this machine and the ratios that matter:

* generator: images/s on 224x224 crops of the shared sample images, batch 1 (the CPU default) and batch 4;
* evaluation: ``evaluate(model, images, "monet")`` twice on the same images with the same cache; the second
  run reads every stylized crop from disk. Ratios of the whole call and of the Monet stage alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from _common import SAMPLE_VAL, machine, progress, sample_tree, targets_table


def _random_official_file(path: Path) -> Path:
    from robustbench_ibn.transforms.cyclegan import ResnetGenerator

    torch.manual_seed(0)
    torch.save(ResnetGenerator().state_dict(), path)
    return path


def bench_generator(weights: Path, crops: torch.Tensor, batch: int) -> float:
    """Median seconds per image over the crops, after one warm-up call."""
    from robustbench_ibn.transforms.cyclegan import load_generator, stylize

    generator = load_generator(weights)
    per_image = []
    with torch.inference_mode():
        stylize(generator, crops[:batch])
        for chunk in crops.split(batch):
            start = time.perf_counter()
            stylize(generator, chunk)
            per_image.append((time.perf_counter() - start) / len(chunk))
    return statistics.median(per_image)


def bench_cache(weights: Path, data: Path, model: str, cache: Path) -> dict[str, float]:
    from robustbench_ibn import evaluate
    from robustbench_ibn.transforms.cyclegan import CycleGANStyle

    stage = {"s": 0.0}
    original = CycleGANStyle.apply_batch

    def timed(self, images, keys):
        start = time.perf_counter()
        try:
            return original(self, images, keys)
        finally:
            stage["s"] += time.perf_counter() - start

    CycleGANStyle.apply_batch = timed  # type: ignore[method-assign]
    os.environ["ROBUSTBENCH_IBN_CACHE"] = str(cache)
    out: dict[str, float] = {}
    try:
        for run in ("first", "second"):
            stage["s"] = 0.0
            start = time.perf_counter()
            evaluate(model, data, "monet", weights="random", transform_weights={"monet": weights}, batch_size=50,
                     workers=0, progress=False, state_dir=cache / "runs")
            out[f"{run}_s"] = time.perf_counter() - start
            out[f"{run}_monet_s"] = stage["s"]
    finally:
        CycleGANStyle.apply_batch = original  # type: ignore[method-assign]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=8, help="shared sample images to use (default 8)")
    parser.add_argument("--weights", type=Path, default=None, help="a style_monet.pth (default: random weights)")
    parser.add_argument("--model", default="resnet18_ibn_b", help="classifier for the evaluation (random init)")
    args = parser.parse_args()
    if not SAMPLE_VAL.is_dir():
        print(f"bench_monet: the shared sample images are missing ({SAMPLE_VAL})", file=sys.stderr)
        return 2
    from robustbench_ibn.data import ImageNetVal

    with tempfile.TemporaryDirectory(prefix="bench_monet_") as tmp_name:
        tmp = Path(tmp_name)
        weights = args.weights or _random_official_file(tmp / "style_monet.pth")
        data = sample_tree(args.images, tmp / "val")
        dataset = ImageNetVal(data)
        crops = torch.stack([dataset[i][0] for i in range(len(dataset))]).float().div(255)
        print(f"{len(crops)} shared images, 224x224 crops; weights: {'given file' if args.weights else 'random'}")
        rows: list[tuple[str, str, str | None, bool | None]] = []
        for batch in (1, 4):
            progress(f"generator alone, batch {batch}")
            s = bench_generator(weights, crops, batch)
            print(f"generator, batch {batch}: {s * 1000:7.1f} ms/img  = {1 / s:5.2f} img/s")
            rows.append((f"generator, batch {batch}", f"{s * 1000:.0f} ms/img", None, None))
        progress(f"evaluate({args.model}, 'monet') twice with one cache")
        r = bench_cache(weights, data, args.model, tmp / "cache")
        print(f"evaluate({args.model}, {len(crops)} images, 'monet'), first run (generates): {r['first_s']:7.2f} s "
              f"(Monet stage {r['first_monet_s']:.2f} s)")
        print(f"same call again (every crop from the cache):            {r['second_s']:7.2f} s "
              f"(Monet stage {r['second_monet_s']:.3f} s)")
        print(f"ratio first/second: whole call {r['first_s'] / r['second_s']:.1f}x, "
              f"Monet stage {r['first_monet_s'] / r['second_monet_s']:.0f}x")
        rows.append(("cache: second run vs first, Monet stage", f"{r['first_monet_s'] / r['second_monet_s']:.0f}x "
                     f"({r['first_monet_s']:.2f} s -> {r['second_monet_s']:.3f} s)", None, None))
        print(f"\nmeasured on: {machine()}\n{targets_table(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
