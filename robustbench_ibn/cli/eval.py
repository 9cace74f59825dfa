"""``robust-eval``: flags -> library calls. Results on stdout, progress and errors on stderr."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence

# Only light modules at import time: --help must not pay for torch (tests/test_cli.py checks it); the library
# is imported inside the functions that do the work.
from ..checks import MAX_SEED
from ..files import safe_filename
from ..options import BAD_IMAGE_POLICIES, PRECISIONS
from ._common import (DATA_ENV, HelpFormatter, add_run_arguments, add_shift_arguments, int_at_least, int_in_range,
                      parse_kwargs, run_command)
from ._domains import add_domain_arguments, domain_specs, print_datasets
from .report import add_report_arguments, check_outputs, present

__all__ = ["build_parser", "main", "output_path"]

PROG = "robust-eval"


USAGE = """%(prog)s --model NAME[,NAME...] [--transforms all|LIST] [--data DIR] [options]
       %(prog)s --list-models [PATTERN] | --list-transforms [PATTERN]"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, usage=USAGE, formatter_class=HelpFormatter,
        description="Top-1/top-5 error of an ImageNet classifier on clean images and under appearance shifts "
        "(Table 1 of IBN-Net, ECCV 2018).",
    )
    parser.add_argument("--model", metavar="NAME[,NAME...]",
                        help="registered model name (see --list-models), tv:NAME, timm:NAME or hub:..., or a comma "
                        "list: each is evaluated and the table gets one column per model (required, except with "
                        "--list-models and --list-transforms)")
    parser.add_argument("--model-kwargs", type=parse_kwargs, default={}, metavar="K=V[,K=V]",
                        help="architecture arguments, e.g. in_ratio=0.25 (default: none)")
    parser.add_argument("--transforms", default="all", metavar="all|LIST",
                        help="'all' (Table 1's rows: --list-transforms marks them) or a comma list of names and "
                        "family members (rgb+50,r+80,std2), or a severity range: the family's number as "
                        "START:STOP:STEP, STOP included (rgb+10:100:10, std1.2:2.0:0.2), or 'none' (with --domain: "
                        "clean val and the datasets); 'clean' is always evaluated")
    parser.add_argument("--data", default=None, metavar="DIR",
                        help=f"ImageNet val folder: class sub-folders, or flat + labels file (default: ${DATA_ENV})")
    parser.add_argument("--labels", default=None, metavar="FILE",
                        help="labels file for a flat image folder (default: LOC_val_solution.csv, val.txt, labels.txt "
                        "or val_labels.txt in the folder)")
    add_domain_arguments(parser)
    parser.add_argument("--weights", default="official", metavar="official|PATH|URL|random",
                        help="'official' (the published file, hash-checked), a checkpoint PATH or URL, or 'random' "
                        "(explicit seeded random init)")
    add_shift_arguments(parser, style_dir="folder of style images for the shifts that use them (adain{alpha}); see "
                        "docs/styles.md (default: none)")
    add_run_arguments(parser, batch_size=50, models="the model")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="fp32, bf16 (autocast, CPU or CUDA; slower than fp32 on CPUs without native bf16) or "
                        "fp16 (CUDA autocast)")
    parser.add_argument("--fast", action="store_true",
                        help="fold BatchNorm into the preceding convolutions (IBN layers keep their InstanceNorm "
                        "half) and compile with torch.compile, eager with a warning when it cannot; it changes float "
                        "rounding, so the record says what ran and its protocol fingerprint differs from the exact "
                        "path's (default: off, the exact path)")
    parser.add_argument("--limit", type=int_at_least(1, "a class-balanced subset of N images; omit it for all"),
                        default=None, metavar="N",
                        help="a deterministic class-balanced subset of N images (default: all images)")
    parser.add_argument("--on-bad-image", default="error", choices=BAD_IMAGE_POLICIES,
                        help="an image that cannot be decoded: 'error' carries on, then stops naming every such "
                        "file; 'skip' leaves them out and the result records which")
    parser.add_argument("--seed", type=int_in_range(0, MAX_SEED, "the random-init and stochastic-shift seed"),
                        default=0, metavar="N",
                        help="seed of --weights random and of stochastic shifts (noise)")
    parser.add_argument("--output", default=None, metavar="FILE.json",
                        help="write the full record (protocol, per-image predictions) as JSON; with several models "
                        "FILE must contain {model}, e.g. runs/{model}.json (default: no record)")
    add_report_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--state-dir", default=None, metavar="DIR",
                        help="where finished batches are kept so an interrupted run resumes "
                        "(default: $ROBUSTBENCH_IBN_CACHE/runs, else ~/.cache/robustbench_ibn/runs)")
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE.py|MODULE",
                        help="load custom shifts or models from a Python file or module (repeatable; default: "
                        "none; installed packages' robustbench_ibn.transforms/models entry points load "
                        "automatically)")
    parser.add_argument("--list-models", nargs="?", const="*", default=None, metavar="PATTERN",
                        help="list the registered models matching PATTERN (fnmatch; default: all) and exit")
    parser.add_argument("--list-transforms", nargs="?", const="*", default=None, metavar="PATTERN",
                        help="list the registered transforms matching PATTERN (fnmatch; default: all) and exit")
    return parser


def _print_models(pattern: str) -> None:
    from ..models import MODELS, list_models, model_info
    from ..models.adapters import describe_adapters

    for name in list_models(pattern):
        info = model_info(name)
        ref = f"{info.ref_top1_err:.2f}/{info.ref_top5_err:.2f}" if info.ref_top1_err is not None else "-"
        weights = f"official weights {info.hash_prefix}" if info.has_weights else "no published weights"
        params = f"{info.num_params / 1e6:.1f}M params" if info.num_params else ""
        origin = MODELS.meta(name).get("origin", "")
        plugin = f"  [{origin}]" if origin and not origin.startswith("robustbench_ibn") else ""
        variant = "  [paper variant, Table 3]" if "paper-variant" in info.tags else ""
        print(f"{name:24s} {weights:34s} ref err {ref:12s} {params}{variant}{plugin}")
    if pattern == "*":
        print(f"# also: {describe_adapters()}")


def _print_transforms(pattern: str) -> None:
    import fnmatch

    from ..text import listing
    from ..transforms import (GROUPS, TABLE1, TRANSFORMS, TransformError, create_transform, list_transforms,
                              transform_spec)

    rows = []
    for name in list_transforms(pattern):
        spec = transform_spec(name)
        example = spec.example_name
        label, definition = "", ""
        if example is not None:
            try:
                shift = create_transform(example)
                label, definition = shift.label, shift.describe()
            except TransformError as err:
                definition = f"(cannot be built: {err})"
        if spec.is_family:
            identity = "no identity" if spec.identity is None else f"identity {spec.member(spec.identity)}"
            parameter = f"{spec.param}: {spec.param_help or 'the family parameter'}; {identity}"
        else:
            parameter = "-"
        notes = "  [Table 1]" if example in TABLE1 else ""
        if spec.origin and not spec.origin.startswith("robustbench_ibn"):
            notes += f"  [{spec.origin}]"
        rows.append((name, example or "-", label or "-", parameter, definition + notes))
    if rows:
        widths = [max(len(r[i]) for r in rows + [("name", "e.g.", "label", "parameter", "")]) for i in range(4)]
        header = ("name", "e.g.", "label", "parameter", "definition")
        for row in [header, *rows]:
            print("  ".join(f"{cell:{w}s}" for cell, w in zip(row, widths)) + "  " + row[4])
    groups = [f"{name} ({len(GROUPS[name])} shifts)" for name in GROUPS if fnmatch.fnmatchcase(name, pattern)]
    if groups:
        print(f"# groups for --transforms: {listing(groups, 4)}")
    missing = [n for n in TABLE1 if n not in TRANSFORMS]
    if missing and pattern == "*":
        print(f"# not available in this installation: {', '.join(missing)} (part of 'all')")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_command(PROG, lambda: _run(parser, args))


def output_path(template: str, model: str) -> str:
    """``--output`` for one model: ``{model}`` becomes the model's name when that is a plain lower-case file name
    (``resnet50_ibn_b``: what a user expects to find), else a safe file name for it (a slug and a short hash,
    :func:`~robustbench_ibn.files.safe_filename`), so ``hub:/dir:entry`` or ``../x`` never make folders or leave the
    one named, and ``A`` and ``a`` never share a file on a case-insensitive disk.

    Example:
        >>> output_path("runs/{model}.json", "resnet50_ibn_b"), output_path("runs/{model}.json", "../x")
        ('runs/resnet50_ibn_b.json', 'runs/x-d6b96a97d1.json')
    """
    return template.replace("{model}", model if _PLAIN_NAME.fullmatch(model) else safe_filename(model))


# Registered names (lower case, digits, _ . + -, starting with a letter or digit) stay as they are in file names.
_PLAIN_NAME = re.compile(r"[a-z0-9][a-z0-9._+-]{0,79}")


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from ..distributed import is_main
    from ..engine import RunConfig, release_state
    from ..models import model_info
    from ..plugins import load_entry_points, load_plugins
    from ..runner import evaluate
    from ..transforms import resolve_transform_names

    load_entry_points()  # plug-ins first: they may add models and shifts to list or run
    load_plugins(args.plugin)
    if args.list_models is not None:
        _print_models(args.list_models)
        return 0
    if args.list_transforms is not None:
        _print_transforms(args.list_transforms)
        return 0
    if args.list_datasets is not None:
        print_datasets(args.list_datasets)
        return 0
    if not args.model:
        parser.error("--model is required (see --list-models)")
    data = args.data or os.environ.get(DATA_ENV)
    if not data:
        parser.error(f"--data is required (or set ${DATA_ENV}) and must point at an ImageNet val folder"
                     + (": clean val is the baseline of every --domain's drop" if args.domain else ""))
    domains = domain_specs(args)
    models = [m.strip() for m in args.model.split(",") if m.strip()]
    if len(models) > 1 and args.output and "{model}" not in args.output:
        parser.error(f"--output needs a {{model}} placeholder with several models (e.g. runs/{{model}}.json), "
                     f"but got {args.output!r}")
    if args.save_entry and args.weights == "random":
        parser.error("--save-entry takes trained weights only: random-init results check the pipeline (that belongs "
                     "in the tests), they are not models to rank")
    # Everything that can be checked without work is checked before the first evaluation starts: how the run
    # executes, the shift names, every output (paths, plot type and matplotlib, entries' folder), the model names.
    config = RunConfig(batch_size=args.batch_size, workers=args.workers, device=args.device, precision=args.precision,
                       seed=args.seed, progress=not args.no_progress, state_dir=args.state_dir,
                       on_bad_image=args.on_bad_image, fast=args.fast)
    names = resolve_transform_names(args.transforms)
    outputs = [output_path(args.output, name) if args.output else None for name in models]
    check_outputs(args, names, [o for o in outputs if o])
    for name in models:
        model_info(name)
    results = []
    for name, output in zip(models, outputs):
        result = evaluate(
            name, data, names, weights=args.weights, model_kwargs=args.model_kwargs,
            labels_file=args.labels, limit=args.limit, output=output, domains=domains, keep_state=True, config=config,
            transform_weights={k: v for pairs in args.transform_weights for k, v in pairs.items()},
            style_dir=args.style_dir,
        )
        if not is_main():  # under torchrun every rank holds the result; rank 0 alone reports it
            continue
        if output:  # written by evaluate(), the run state kept until every other output is written too
            print(f"{PROG}: record written to {output}", file=sys.stderr)
        env = result.environment
        print(f"{name}: done in {env['duration_s']:.1f} s (waiting for data {env['loader_wait_s']:.1f} s, "
              f"compute {env['compute_s']:.1f} s)", file=sys.stderr)
        results.append(result)
    if is_main():
        try:
            present(results, args, PROG)
        except (OSError, ValueError, RuntimeError, KeyError) as err:
            kept = ", ".join(str(r.state_dir) for r in results if r.state_dir is not None)
            # Only a failed write is about space or paths; any other error says its own way out.
            what, fix = ((f"cannot write the outputs: {err}.", "Free some space (or fix the path)")
                         if isinstance(err, OSError) else (str(err), "Fix what it names"))
            raise RuntimeError(
                f"{what} Nothing computed is lost: every batch is kept in {kept}. {fix} and run the same command "
                f"again: it writes the outputs without evaluating anything."
            ) from err
        for result in results:  # every output is written: the saved batches are no longer needed
            release_state(result)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
