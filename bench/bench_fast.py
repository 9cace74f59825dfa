"""The fast path (BatchNorm folded, then torch.compile) against the official IBN-Net loop, in one run.

Loops, each over the same images x 4 domains (clean, RGB+50, R+50, std×1.5), same threads and workers:

- official: IBN-Net's imagenet.py eval (bench_eval.reference_loop: torchvision ImageFolder, Resize(256),
  CenterCrop(224), ToTensor, shift, Normalize, default memory format, fp32), the reference of every ratio;
- exact:    robustbench_ibn.evaluate() on the model as it is (channels_last; fp32 or bf16 autocast);
- fused:    evaluate() on fold_batchnorm(model) (channels_last);
- compiled: evaluate() on compile_model(fold_batchnorm(model)) (inductor; compiled before the loops, in the
  loop's own context, so the loops time steady-state batches; the compile time is reported apart).

Loops alternate and each keeps its best time (load from other processes only ever slows a loop down); only the
ratios mean something on a shared machine. Because loops of a minute still drift with other processes' load, the
model pass alone is also timed interleaved batch by batch (every round runs each variant once on the same batch
of real crops; median over rounds): official-style (default memory format), exact (channels_last), fused,
compiled, so that load falls on all of them alike. The prediction check runs on the trained EfficientNet-Lite0 (the lite
extra): top-1 agreement of the fast paths with the exact fp32 path over every image and domain.

    python bench/bench_fast.py                      # ResNet-50 and ResNet-50-IBN-a on 100 images; Lite0 on 500
    python bench/bench_fast.py --n 50 --lite-n 100 --repeats 1 --rounds 2 --precisions fp32

It prints each figure next to its target (throughput of fused+compiled at fp32 >= 1.6x the official loop;
top-1 agreement >= 99.9%), compile times (cold: a fresh inductor cache, unless --warm-cache) and the break-even
number of images (compile time / time saved per image), then a JSON record.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import robustbench_ibn as rb
from robustbench_ibn.data import ImageNetVal
from robustbench_ibn.fast import compile_model, fold_batchnorm
from robustbench_ibn.models.calibrate import calibrate_random_init

from _common import SAMPLE_VAL, sample_tree
from bench_eval import MEAN, STD, SHIFTS, reference_loop

THROUGHPUT_TARGET = 1.6  # fused+compiled vs official, fp32
AGREEMENT_TARGET = 0.999  # top-1 agreement with the exact path, trained Lite0
DOMAINS = 4


def autocast(precision: str) -> contextlib.AbstractContextManager[object]:
    return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()


def fast_variants(model: torch.nn.Module, precisions: list[str], batch: int) -> dict[str, object]:
    """The folded model (channels_last, as evaluate() runs it) and one compiled copy per precision."""
    folded = fold_batchnorm(model)
    module = folded.module.to(memory_format=torch.channels_last).eval()
    # evaluate() hands the model channels_last batches: compiled code is specialised to those strides.
    example = torch.rand(batch, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    compiled = {}
    for precision in precisions:
        with torch.inference_mode(), autocast(precision):
            compiled[precision] = compile_model(module, example)
        print(f"  {precision}: {compiled[precision].message}", flush=True)
    return {"folded": folded, "module": module, "compiled": compiled}


def compile_batch(batch_size: int, n: int) -> int:
    """The batch size the loops run (compiled code is specialised to it; another size compiles again)."""
    if n > batch_size and n % batch_size:
        print(f"  note: {n} images in batches of {batch_size}: the shorter last batch compiles once more in the first "
              "repeat", flush=True)
    return min(batch_size, n)


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def run_loops(loops: dict[str, Callable[[], object]], repeats: int) -> tuple[dict[str, float], dict[str, list[float]],
                                                                           dict[str, object]]:
    """Each loop ``repeats`` times, alternating; best time, all times and the last output of each."""
    times: dict[str, list[float]] = {name: [] for name in loops}
    outputs: dict[str, object] = {}
    for r in range(repeats):
        for name, loop in loops.items():
            seconds, outputs[name] = timed(loop)
            times[name].append(seconds)
            print(f"    repeat {r + 1}: {name:14s} {seconds:7.1f} s", flush=True)
    return {name: min(t) for name, t in times.items()}, times, outputs


def top1(result: object) -> np.ndarray:
    """[domains, N] top-1 of an EvalResult or a reference-loop dict."""
    preds = result.predictions if hasattr(result, "predictions") else result
    return np.stack([np.asarray(preds[k])[:, 0] for k in ("clean", *SHIFTS.split(","))])


def forward_rounds(variants: dict[str, tuple[torch.nn.Module, str]], x: torch.Tensor, rounds: int) -> dict[str, float]:
    """Median seconds per batch of each (module, precision), interleaved round by round on the same batch ``x``:
    in the default memory format for "official", channels_last (as evaluate() runs) for the others."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    inputs = {"official": x.contiguous(), "ours": x.contiguous(memory_format=torch.channels_last)}
    with torch.inference_mode():
        for _ in range(rounds + 1):  # the first round warms up and is not counted
            for name, (net, precision) in variants.items():
                batch = inputs["official" if name == "official" else "ours"]
                start = time.perf_counter()
                with autocast(precision):
                    net(batch)
                times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t[1:])) for name, t in times.items()}


def break_even(compile_s: float, eager_s: float, compiled_s: float, n: int) -> float | None:
    """Images (x 4 domains) after which compiling has paid for itself; None if compiled is not faster."""
    saved = (eager_s - compiled_s) / n
    return compile_s / saved if saved > 0 else None


def verdict(value: float, target: float) -> str:
    return "met" if value >= target else "NOT met"


def bench_throughput(name: str, root: Path, args: argparse.Namespace) -> dict[str, object]:
    print(f"\n{name}: {args.n} images x {DOMAINS} domains, batch {args.batch_size}, {args.workers} workers", flush=True)
    model = rb.create_model(name, weights="random")
    # Calibrated random weights (see calibrate_random_init) so that the prediction comparisons are not vacuous.
    calib = torch.stack([ImageNetVal(SAMPLE_VAL)[i][0] for i in range(0, 500, 10)]).float().div(255)
    calibrate_random_init(model, calib, MEAN, STD)
    fast = fast_variants(model, args.precisions, compile_batch(args.batch_size, args.n))
    cfg = model.data_config
    state = Path(tempfile.mkdtemp()) / "state"

    def ours(net: torch.nn.Module, precision: str) -> Callable[[], object]:
        return lambda: rb.evaluate(net, root, SHIFTS, data_config=cfg, batch_size=args.batch_size,
                                   workers=args.workers, precision=precision, progress=False, state_dir=state)

    loops: dict[str, Callable[[], object]] = {"official": lambda: reference_loop(model, root, args.batch_size,
                                                                                  args.workers)}
    for precision in args.precisions:
        loops[f"exact {precision}"] = ours(model, precision)
        loops[f"fused {precision}"] = ours(fast["module"], precision)
        if fast["compiled"][precision].compiled:
            loops[f"compiled {precision}"] = ours(fast["compiled"][precision].module, precision)
    official = copy.deepcopy(model).to(memory_format=torch.contiguous_format)  # evaluate() moves `model` to CL
    exact = copy.deepcopy(model).to(memory_format=torch.channels_last)
    variants: dict[str, tuple[torch.nn.Module, str]] = {"official": (official, "fp32")}
    for precision in args.precisions:
        variants[f"exact {precision}"] = (exact, precision)
        variants[f"fused {precision}"] = (fast["module"], precision)
        if fast["compiled"][precision].compiled:
            variants[f"compiled {precision}"] = (fast["compiled"][precision].module, precision)
    crops = torch.stack([ImageNetVal(root)[i][0] for i in range(compile_batch(args.batch_size, args.n))])
    x = (crops.float().div(255) - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    print(f"  model pass, interleaved: {args.rounds} rounds of {len(variants)} variants on a batch of {len(x)}",
          flush=True)
    per_batch = forward_rounds(variants, x, args.rounds)
    best, all_times, outputs = run_loops(loops, args.repeats)
    reference = best["official"]
    exact_top1 = top1(outputs["official"])
    report: dict[str, object] = {
        "model": name, "images": args.n, "fold": fast["folded"].describe(),
        "seconds": {k: round(v, 2) for k, v in best.items()},
        "all_seconds": {k: [round(x, 2) for x in v] for k, v in all_times.items()},
        "ratio_vs_official": {k: round(reference / v, 3) for k, v in best.items()},
        "forward_s_per_batch": {k: round(v, 4) for k, v in per_batch.items()},
        "forward_ratio_vs_official": {k: round(per_batch["official"] / v, 3) for k, v in per_batch.items()},
        "top1_same_as_official": {k: round(float(np.mean(top1(v) == exact_top1)), 4) for k, v in outputs.items()},
        "compile_s": {p: round(c.seconds, 1) for p, c in fast["compiled"].items()},
        "compiled": {p: c.compiled for p, c in fast["compiled"].items()},
        "break_even_images": {},
    }
    for precision, compiled in fast["compiled"].items():
        if compiled.compiled:
            key = f"compiled {precision}"
            report["break_even_images"][precision] = {
                against: (None if (b := break_even(compiled.seconds, best[f"{against} {precision}"], best[key],
                                                   args.n)) is None else round(b))
                for against in ("fused", "exact")
            }
    return report


def bench_lite(root: Path, args: argparse.Namespace) -> dict[str, object]:
    print(f"\nefficientnet_lite0 (trained): {args.lite_n} images x {DOMAINS} domains, top-1 agreement", flush=True)
    model = rb.create_model("efficientnet_lite0")
    cfg = model.data_config
    fast = fast_variants(model, args.precisions, compile_batch(args.batch_size, args.lite_n))
    state = Path(tempfile.mkdtemp()) / "state"

    def ours(net: torch.nn.Module, precision: str) -> Callable[[], object]:
        return lambda: rb.evaluate(net, root, SHIFTS, data_config=cfg, batch_size=args.batch_size,
                                   workers=args.workers, precision=precision, progress=False, state_dir=state)

    loops = {"exact fp32": ours(model, "fp32"), "fused fp32": ours(fast["module"], "fp32")}
    for precision in args.precisions:
        if fast["compiled"][precision].compiled:
            loops[f"compiled {precision}"] = ours(fast["compiled"][precision].module, precision)
    if "bf16" in args.precisions:
        loops["exact bf16"] = ours(model, "bf16")
    best, _, outputs = run_loops(loops, 1)
    exact = top1(outputs["exact fp32"])
    agreement = {k: float(np.mean(top1(v) == exact)) for k, v in outputs.items() if k != "exact fp32"}
    return {
        "images": args.lite_n, "predictions": int(exact.size), "fold": fast["folded"].describe(),
        "seconds": {k: round(v, 2) for k, v in best.items()},
        "top1_agreement_with_exact_fp32": {k: round(v, 5) for k, v in agreement.items()},
        "top1_changed": {k: int(round((1 - v) * exact.size)) for k, v in agreement.items()},
        "clean_top1_err": {k: round(float(np.mean(top1(v)[0] != np.asarray(v.labels))) * 100, 2)
                           for k, v in outputs.items()},
        "compile_s": {p: round(c.seconds, 1) for p, c in fast["compiled"].items()},
    }


def cpu_facts() -> dict[str, object]:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    return {"cpu": model or platform.processor(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "bf16_flags": sorted(f for f in flags if "bf16" in f or f.startswith("amx")),
            "torch": torch.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,resnet50_ibn_a")
    parser.add_argument("--n", type=int, default=100, help="images for the throughput loops")
    parser.add_argument("--lite-n", type=int, default=500, help="images for the Lite0 agreement check (0: skip)")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each loop; best time kept")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds of the model-pass timing")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--warm-cache", action="store_true",
                        help="use inductor's usual on-disk cache (default: a fresh one, so compile times are cold)")
    args = parser.parse_args()
    args.precisions = args.precisions.split(",")
    tmp = Path(tempfile.mkdtemp())
    if not args.warm_cache:  # read by inductor when it first compiles: a first-time user's compile time
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(tmp / "inductor-cache")
    facts = cpu_facts()
    load_before = os.getloadavg()
    cache = "warm (inductor's usual cache)" if args.warm_cache else "cold (fresh inductor cache)"
    print(f"{facts}; load average {load_before}; compile cache {cache}", flush=True)

    root = sample_tree(args.n, tmp / "val")
    reports = [bench_throughput(name, root, args) for name in args.models.split(",")]
    lite = bench_lite(sample_tree(args.lite_n, tmp / "lite"), args) if args.lite_n else None

    print("\n== figures against targets ==")
    for r in reports:
        for k, ratio in r["ratio_vs_official"].items():
            if k == "official":
                continue
            target = f"   target >= {THROUGHPUT_TARGET}x: {verdict(ratio, THROUGHPUT_TARGET)}" if k == "compiled fp32" \
                else ""
            print(f"{r['model']:16s} {k:14s} {ratio:6.3f}x the official loop ({r['seconds'][k]} s vs "
                  f"{r['seconds']['official']} s){target}")
        for k, ratio in r["forward_ratio_vs_official"].items():
            if k != "official":
                print(f"{r['model']:16s} {k:14s} {ratio:6.3f}x the official-style model pass (interleaved, "
                      f"{r['forward_s_per_batch'][k]} s vs {r['forward_s_per_batch']['official']} s per batch)")
        for p, s in r["compile_s"].items():
            print(f"{r['model']:16s} compile {p}: {s} s; break-even images (x{DOMAINS} domains) vs fused / exact: "
                  f"{r['break_even_images'].get(p)}")
    if lite:
        for k, v in lite["top1_agreement_with_exact_fp32"].items():
            target = f"   target >= {AGREEMENT_TARGET:.1%}: {verdict(v, AGREEMENT_TARGET)}" if k.endswith("fp32") else ""
            print(f"efficientnet_lite0 {k:14s} top-1 agreement {v:.3%} ({lite['top1_changed'][k]} of "
                  f"{lite['predictions']} changed){target}")
    load_after = os.getloadavg()
    print(f"load average before {load_before}, after {load_after}")
    print(json.dumps({"machine": facts, "load_average": [load_before, load_after], "compile_cache": cache,
                      "throughput": reports, "lite0": lite}, indent=2))


if __name__ == "__main__":
    main()
