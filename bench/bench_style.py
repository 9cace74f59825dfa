"""Style-shift throughput: the CycleGAN generator and AdaIN per image, against the classifier, in one run.

    .venv/bin/python bench/bench_style.py [--images 8] [--repeats 2] [--threads N] [--device cpu] [--stages-only]

Both networks have random weights in their official layouts (the speed does not depend on the values), run
fp32 in inference mode on 224x224 crops of the shared sample images (tiled to fill a batch of 32). For each
network, batch size 1, 8 and 32, and memory format (contiguous, channels_last) it prints the best time per
image over ``--repeats`` alternating passes, and that time as a multiple of the reference measured in the same
run: ResNet-50's own forward per image (batch 32, channels_last, as the runner runs it), i.e. how many
classifier evaluations one stylized crop costs. Absolute times on a shared machine drift; the ratios are
what to compare. It also prints AdaIN's one-off cost per style image (load, crop, Lanczos resize, encoder)
and the stylized-crop cache's second-run speed-up: ``AdaINStyle.apply_batch`` on the same crops twice, the
second time (a new instance, as a new run would) reading every crop from the cache. About 200 stylized crops
in all: a few minutes on this project's 2-core machine.

Finally the cost of the image stage against the crop stage (``--stages-only`` runs just this): ``monet-official``
against ``monet`` per image, uncached (first run: generator and cache write) and cached (second run, a new
instance reading the cache), each step as the engine runs it. A crop-stage shift works on the crops its source's
pass decodes for every crop-stage domain at once, so it is charged the generator (or the cache read) on the 224
crop only; an image-stage domain has its own pass, so it is charged that pass's decode, the squash to 256x256
(``prepare_image``, in the loader's workers), the generator at 256x256 (or the cache read) and the model's
resize and crop of the result.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from _common import SAMPLE_VAL, machine, progress, sample_tree, targets_table, timed

STYLES = SAMPLE_VAL.parents[1] / "styles"
BATCHES = (1, 8, 32)
FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def random_adain_files(folder: Path) -> Path:
    """Random weights in the pytorch-AdaIN layouts (vgg_normalised.pth, decoder.pth)."""
    from robustbench_ibn.transforms.adain import AdaINDecoder, NormalisedVGG

    torch.manual_seed(0)
    torch.save(NormalisedVGG().state_dict(), folder / "vgg_normalised.pth")
    torch.save(AdaINDecoder().state_dict(), folder / "decoder.pth")
    return folder


def per_image(run: Callable[[torch.Tensor, slice], object], crops: torch.Tensor, batch: int,
              device: torch.device) -> float:
    """Seconds per image of one pass over max(batch, 8) crops in batches of ``batch`` (``run(chunk, its slice)``)."""
    n = max(batch, 8)
    return timed(lambda: [run(crops[i:i + batch], slice(i, i + batch)) for i in range(0, n, batch)], device) / n


def stage_costs(dataset: object, weights: Path, cache: Path, device: torch.device) -> dict[str, dict[str, float]]:
    """Seconds per image of each step of ``monet`` (crop stage) and ``monet-official`` (image stage), uncached and
    cached, on every image of ``dataset`` (an ImageNetVal in the default geometry), one image per step call."""
    from PIL import Image

    from robustbench_ibn.transforms import create_transform

    n = len(dataset)  # type: ignore[arg-type]
    keys = [rel for rel, _ in dataset.samples]  # type: ignore[attr-defined]
    costs: dict[str, dict[str, float]] = {}
    for run in ("uncached", "cached"):  # the same cache folder: the second run reads what the first wrote
        crop = create_transform("monet", weights=weights, cache_dir=cache)
        official = create_transform("monet-official", weights=weights, cache_dir=cache)
        for shift in (crop, official):
            shift.prepare(progress=False)
        steps = dict.fromkeys(("decode", "squash", "generator or cache", "resize and crop", "crop: generator or cache"),
                              0.0)
        for i in range(n):
            start = time.perf_counter()
            image = dataset.load(i)  # type: ignore[attr-defined]
            decoded = time.perf_counter()
            x = official.prepare_image(image)[None].to(device).float().div_(255)
            squashed = time.perf_counter()
            out = official.apply_batch(x, keys[i:i + 1])
            pixels = out.mul(255).round_().to(torch.uint8)[0].permute(1, 2, 0).cpu().numpy()
            generated = time.perf_counter()
            dataset.preprocess(Image.fromarray(pixels, "RGB"))  # type: ignore[attr-defined]
            done = time.perf_counter()
            crop_input = dataset.preprocess(image)[None].to(device).float().div_(255)  # type: ignore[attr-defined]
            before = time.perf_counter()
            crop.apply_batch(crop_input, keys[i:i + 1])
            after = time.perf_counter()
            for step, seconds in zip(steps, (decoded - start, squashed - decoded, generated - squashed, done - generated,
                                             after - before)):
                steps[step] += seconds / n
        assert (official.generated, crop.generated) == ((n, n) if run == "uncached" else (0, 0))
        costs[run] = steps
    return costs


def print_stage_costs(costs: dict[str, dict[str, float]], ref: float | None, n: int) -> None:
    def cell(seconds: float) -> str:
        return f"{seconds * 1000:8.1f} ms" + (f" {seconds / ref:6.3f}x" if ref else "")

    print(f"image stage vs crop stage, per image over {n} shared images (generator batch 1, as on CPU), "
          f"ms{' and x ResNet-50' if ref else ''}:")
    print(f"{'':36} {'uncached':>17} {'cached':>17}")
    for step in ("decode", "squash", "generator or cache", "resize and crop"):
        print(f"  monet-official: {step:18} {cell(costs['uncached'][step])} {cell(costs['cached'][step])}")
    totals = {run: sum(v for k, v in steps.items() if not k.startswith("crop")) for run, steps in costs.items()}
    crops = {run: steps["crop: generator or cache"] for run, steps in costs.items()}
    print(f"  {'monet-official (image stage)':34} {cell(totals['uncached'])} {cell(totals['cached'])}")
    print(f"  {'monet (crop stage)':34} {cell(crops['uncached'])} {cell(crops['cached'])}")
    print(f"  {'ratio image / crop stage':34} {totals['uncached'] / crops['uncached']:16.2f}x "
          f"{totals['cached'] / crops['cached']:16.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=8, help="distinct shared sample images (tiled to 32)")
    parser.add_argument("--repeats", type=int, default=1, help="alternating passes per setting; best time kept")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--stages-only", action="store_true",
                        help="only the image-stage vs crop-stage comparison (no reference, no network table)")
    args = parser.parse_args()
    if not SAMPLE_VAL.is_dir() or not STYLES.is_dir():
        print(f"bench_style: the shared images are missing ({SAMPLE_VAL}, {STYLES})", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    from robustbench_ibn import create_model
    from robustbench_ibn.data import IMAGENET_MEAN, IMAGENET_STD, ImageNetVal
    from robustbench_ibn.transforms import create_transform
    from robustbench_ibn.transforms.adain import adain_stylize, load_adain
    from robustbench_ibn.transforms.cyclegan import ResnetGenerator, stylize

    with tempfile.TemporaryDirectory(prefix="bench_style_") as tmp_name:
        tmp = Path(tmp_name)
        dataset = ImageNetVal(sample_tree(args.images, tmp / "val"))
        torch.manual_seed(0)
        torch.save(ResnetGenerator().state_dict(), tmp / "style_monet.pth")  # random, the official layout
        if args.stages_only:
            print_stage_costs(stage_costs(dataset, tmp / "style_monet.pth", tmp / "stage_cache", device), None,
                              len(dataset))
            return 0
        distinct = torch.stack([dataset[i][0] for i in range(len(dataset))]).float().div(255)
        crops = distinct.repeat(-(-32 // len(distinct)), 1, 1, 1)[:32].to(device)
        weights = random_adain_files(tmp)
        adain = create_transform("adain1", weights=weights, style_dir=STYLES, cache_dir=tmp / "cache")
        adain.prepare(progress=False)
        encoder, decoder = load_adain(weights / "vgg_normalised.pth", weights / "decoder.pth")
        encoder, decoder = encoder.to(device), decoder.to(device)
        torch.manual_seed(0)
        generator = ResnetGenerator().eval().requires_grad_(False).to(device)
        classifier = create_model("resnet50", weights="random").eval().to(device, memory_format=torch.channels_last)
        mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

        with torch.inference_mode():
            # One-off per style: load, crop, resize, encode (the statistics of the 32 crops' styles).
            keys = [f"bench/{i}.JPEG" for i in range(len(crops))]
            styles = adain.choose_styles(keys)
            start = time.perf_counter()
            style_mean, style_std = adain.style_statistics(styles, 224, 224, device)
            style_s = (time.perf_counter() - start) / adain.style_encodings

            def classify(x: torch.Tensor, _: slice) -> object:
                return classifier(((x - mean) / std).contiguous(memory_format=torch.channels_last))

            def run_adain(fmt: torch.memory_format) -> Callable[[torch.Tensor, slice], object]:
                return lambda x, s: adain_stylize(encoder, decoder, x, style_mean[s], style_std[s], 1.0,
                                                  channels_last=fmt == torch.channels_last)

            def run_generator(fmt: torch.memory_format) -> Callable[[torch.Tensor, slice], object]:
                return lambda x, _: stylize(generator, x.contiguous(memory_format=fmt))

            results: dict[tuple[str, int, str], float] = {}
            reference = []
            for repeat in range(1, args.repeats + 1):
                progress(f"repeat {repeat}/{args.repeats}: ResNet-50, CycleGAN and AdaIN at batch {BATCHES}")
                reference.append(per_image(classify, crops, 32, device))
                for name, make, modules in (("CycleGAN", run_generator, [generator]),
                                            ("AdaIN", run_adain, [encoder, decoder])):
                    for fmt_name, fmt in FORMATS.items():
                        for module in modules:
                            module.to(memory_format=fmt)
                        make(fmt)(crops[:1], slice(0, 1))  # warm-up: weights in this format, kernels chosen
                        for batch in BATCHES:
                            s = per_image(make(fmt), crops, batch, device)
                            key = (name, batch, fmt_name)
                            results[key] = min(results.get(key, float("inf")), s)
            ref = min(reference)

        # The cache: the distinct crops twice through apply_batch (default settings), the second from disk.
        progress("AdaIN cache: the same crops twice through apply_batch")
        cached = crops[:len(distinct)]
        first = timed(lambda: adain.apply_batch(cached, keys[:len(cached)]), device)
        again = create_transform("adain1", weights=weights, style_dir=STYLES, cache_dir=tmp / "cache")
        again.prepare(progress=False)
        second = timed(lambda: again.apply_batch(cached, keys[:len(cached)]), device)
        assert again.cache_hits == len(cached) and again.decoded == 0
        stages = stage_costs(dataset, tmp / "style_monet.pth", tmp / "stage_cache", device)

    print(f"machine: {os.cpu_count()} CPU cores, {torch.get_num_threads()} threads, device {device}, torch "
          f"{torch.__version__}; {len(distinct)} shared images as 224x224 crops (tiled to 32); best of {args.repeats}")
    print(f"reference: ResNet-50 forward, batch 32, channels_last: {ref * 1000:.1f} ms/img (= 1x)")
    print(f"{'network':9} {'batch':>5} {'contiguous':>17} {'channels_last':>17} {'cl speed-up':>12}")
    for name in ("CycleGAN", "AdaIN"):
        for batch in BATCHES:
            c, cl = results[name, batch, "contiguous"], results[name, batch, "channels_last"]
            print(f"{name:9} {batch:5} {c * 1000:8.0f} ms {c / ref:5.1f}x {cl * 1000:8.0f} ms {cl / ref:5.1f}x "
                  f"{c / cl:11.2f}x")
    best = {name: min((results[k], k) for k in results if k[0] == name) for name in ("CycleGAN", "AdaIN")}
    for name, (s, (_, batch, fmt)) in best.items():
        print(f"fastest {name}: batch {batch}, {fmt}: {s * 1000:.0f} ms/img = {s / ref:.1f} ResNet-50 evaluations")
    print(f"AdaIN style image (load, crop, Lanczos, encode), once per style and size: {style_s * 1000:.0f} ms "
          f"= {style_s / best['AdaIN'][0]:.2f} stylized crops")
    print(f"AdaIN cache, apply_batch on {len(cached)} crops: first {first:.2f} s (computed), second {second:.3f} s "
          f"(all from the cache): {first / second:.0f}x faster")
    print_stage_costs(stages, ref, len(dataset))
    rows: list[tuple[str, str, str | None, bool | None]] = [
        (f"fastest {name} (batch {batch}, {fmt})", f"{s * 1000:.0f} ms/img = {s / ref:.1f} ResNet-50 evaluations",
         None, None) for name, (s, (_, batch, fmt)) in best.items()]
    rows.append(("AdaIN cache, second run vs first", f"{first / second:.0f}x", None, None))
    print(f"\nmeasured on: {machine()}\n{targets_table(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
