"""``robust-divergence``: flags -> :func:`robustbench_ibn.divergence.feature_divergence`. Table on stdout,
progress and errors on stderr (exit 2 for bad input)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

# Only light modules at import time, as in robust-eval: --help must not pay for torch.
from ..checks import MAX_SEED
from ..options import BAD_IMAGE_POLICIES, DIVERGENCE_EPS, REPORT_FORMATS
from ._common import (DATA_ENV, HelpFormatter, add_run_arguments, add_shift_arguments, int_at_least, int_in_range,
                      parse_kwargs, plot_file, run_command)

__all__ = ["build_parser", "main"]

PROG = "robust-divergence"
CALIBRATE_DEFAULT = 64


USAGE = """%(prog)s --model NAME[,NAME...] (--domains A,B | --domains-dirs DIR_A,DIR_B | --content-split)
                         [--data DIR] [--weights official|PATH|URL|random [--calibrate [N]]] [options]"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, usage=USAGE, formatter_class=HelpFormatter,
        description="Feature divergence between two image domains at every layer position (IBN-Net Sec. 4.3, "
        "Fig. 2 and 5): per channel the spatial mean per image, a Gaussian per domain, the symmetric KL, "
        "averaged over channels.",
    )
    parser.add_argument("--model", metavar="NAME[,NAME...]",
                        help="registered model name (see robust-eval --list-models), or a comma list: one column "
                        "and one line in the plot per model (required)")
    parser.add_argument("--model-kwargs", type=parse_kwargs, default={}, metavar="K=V[,K=V]",
                        help="architecture arguments, e.g. in_ratio=0.25 (default: none)")
    parser.add_argument("--weights", default="official", metavar="official|PATH|URL|random",
                        help="'official' (the published file, hash-checked), a checkpoint PATH or URL, or 'random' "
                        "(explicit seeded random init; add --calibrate)")
    parser.add_argument("--seed", type=int_in_range(0, MAX_SEED, "the random-init and stochastic-shift seed"),
                        default=0, metavar="N",
                        help="seed of --weights random and of stochastic shifts (noise)")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--domains", metavar="A,B",
                      help="two shifts of the same images of --data (clean,monet; clean,rgb+50; r+50,std1.5): each "
                      "image is decoded once and both shifts are applied to it")
    mode.add_argument("--domains-dirs", metavar="DIR_A,DIR_B",
                      help="two image folders (ImageNet-labelled or any images), e.g. two datasets")
    mode.add_argument("--content-split", action="store_true",
                      help="the paper's content gap: clean images of --data, the first half of the classes present "
                      "(by canonical index; 0-499 on ImageNet val) against the second half")
    parser.add_argument("--data", default=None, metavar="DIR",
                        help=f"ImageNet val folder for --domains and --content-split (default: ${DATA_ENV})")
    parser.add_argument("--labels", default=None, metavar="FILE",
                        help="labels file for a flat image folder (default: LOC_val_solution.csv, val.txt, labels.txt "
                        "or val_labels.txt in the folder)")
    parser.add_argument("--layers", default=None, metavar="NAME[,NAME...]",
                        help="module names to measure (default for ResNet-style models: the paper's positions, the "
                        "stem's ReLU and every residual block, found from the structure)")
    parser.add_argument("--calibrate", nargs="?", type=int_at_least(1, "calibration images"), const=CALIBRATE_DEFAULT,
                        default=None, metavar="N",
                        help="with --weights random: calibrate BatchNorm statistics and classifier on N evenly spaced "
                        f"clean images (N default: {CALIBRATE_DEFAULT}) so the random network is not degenerate")
    parser.add_argument("--limit", type=int_at_least(1, "a class-balanced subset of N images; omit it for all"),
                        default=None, metavar="N",
                        help="a deterministic subset of N images, class-balanced; per folder with --domains-dirs "
                        "(default: all images)")
    parser.add_argument("--eps", type=float, default=DIVERGENCE_EPS,
                        help="added to every per-channel variance so constant channels stay finite")
    add_run_arguments(parser, batch_size=32, models="the models")
    parser.add_argument("--on-bad-image", default="error", choices=BAD_IMAGE_POLICIES,
                        help="an image that cannot be decoded: 'error' stops after naming every such file; 'skip' "
                        "leaves them out")
    add_shift_arguments(parser, style_dir="folder of style images for a --domains shift that uses them (adain{alpha}; "
                        "default: none)")
    parser.add_argument("--format", default="markdown", choices=REPORT_FORMATS,
                        help="what is printed on stdout: a markdown table with a header, a LaTeX booktabs tabular, "
                        "CSV (one row per model and layer) or the JSON record")
    parser.add_argument("--output", default=None, metavar="FILE.json",
                        help="write the record (run description and every row) as JSON (default: no record)")
    parser.add_argument("--plot", type=plot_file, default=None, metavar="FILE",
                        help="line plot of divergence against layer position, one line per model (.png, .svg or "
                        ".pdf; default: no plot)")
    parser.add_argument("--plot-scale", default="linear", choices=("linear", "log"), help="y axis of --plot")
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE.py|MODULE",
                        help="load custom shifts or models from a Python file or module (repeatable; default: none)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.model:
        parser.error("--model is required (see robust-eval --list-models)")
    if args.domains_dirs and args.data:
        parser.error("--data is not used with --domains-dirs: the two folders are the data")
    data = None if args.domains_dirs else args.data or os.environ.get(DATA_ENV)
    if not args.domains_dirs and not data:
        parser.error(f"--data is required with --domains and --content-split (or set ${DATA_ENV})")
    if args.calibrate is not None and args.weights != "random":
        parser.error("--calibrate re-estimates the BatchNorm statistics of a random-init model; use it only with "
                     "--weights random (trained weights carry their own statistics)")
    models = [m.strip() for m in args.model.split(",") if m.strip()]
    return run_command(PROG, lambda: _run(args, data, models))


def _run(args: argparse.Namespace, data: str | None, models: list[str]) -> int:
    from ..divergence import divergence_json, divergence_table, feature_divergence, plot_divergence, save_divergence
    from ..models import model_info
    from ..plugins import load_entry_points, load_plugins

    load_entry_points()
    load_plugins(args.plugin)
    for name in models:  # every name is checked before the first model is built
        model_info(name)
    frame = feature_divergence(
        models, data, args.domains, domain_dirs=args.domains_dirs, content_split=args.content_split or False,
        layers=[n.strip() for n in args.layers.split(",") if n.strip()] if args.layers else None,
        weights=args.weights, model_kwargs=args.model_kwargs, calibrate=args.calibrate, labels_file=args.labels,
        limit=args.limit, eps=args.eps,
        transform_weights={k: v for pairs in args.transform_weights for k, v in pairs.items()},
        style_dir=args.style_dir,
        batch_size=args.batch_size, workers=args.workers, device=args.device, seed=args.seed,
        progress=not args.no_progress, on_bad_image=args.on_bad_image,
    )
    if args.format == "json":
        print(json.dumps(divergence_json(frame), indent=1))
    elif args.format == "csv":
        print(frame.to_csv(index=False), end="")
    else:
        print(divergence_table(frame, fmt=args.format))
    if args.output:
        print(f"{PROG}: record written to {save_divergence(frame, args.output)}", file=sys.stderr)
    if args.plot:
        path = plot_divergence(frame, args.plot, log=args.plot_scale == "log")
        print(f"{PROG}: plot written to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
