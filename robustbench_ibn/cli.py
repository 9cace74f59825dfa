"""``robust-eval``: flags -> library calls. Results on stdout, progress and errors on stderr."""

from __future__ import annotations

import argparse
import ast
import os
import sys
from collections.abc import Sequence
from typing import Any

from .data import DataError
from .models import list_models, model_info
from .models._weights import WeightsError
from .report import FORMATS, format_report
from .runner import evaluate
from .transforms import TABLE1, TRANSFORMS, TransformError, create_transform, list_transforms

__all__ = ["build_parser", "main"]

DATA_ENV = "ROBUSTBENCH_IBN_DATA"


def parse_kwargs(text: str) -> dict[str, Any]:
    """``in_ratio=0.25,layers=(1,2)`` -> dict; values through ``ast.literal_eval``, bare words as strings."""
    out: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in _split_top_level(text))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise argparse.ArgumentTypeError(f"Expected key=value pairs separated by commas, but got {item!r}.")
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()
    return out


def _split_top_level(text: str) -> list[str]:
    # Split on commas that are not inside brackets, so tuples survive: "a=(1,2),b=3".
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robust-eval",
        description="Top-1/top-5 error of an ImageNet classifier on clean images and under appearance shifts "
        "(Table 1 of IBN-Net, ECCV 2018).",
    )
    parser.add_argument("--model", help="registered model name (see --list-models)")
    parser.add_argument("--model-kwargs", type=parse_kwargs, default={}, metavar="K=V[,K=V]",
                        help="architecture arguments, e.g. in_ratio=0.25")
    parser.add_argument("--transforms", default="all",
                        help="'all' (Table 1: " + ", ".join(TABLE1) + ") or a comma list of names and family "
                        "members (rgb+50,r+80,std2); 'clean' is always evaluated (default: all)")
    parser.add_argument("--data", default=None,
                        help=f"ImageNet val folder (default: ${DATA_ENV}); class sub-folders or flat + labels file")
    parser.add_argument("--labels", default=None, help="labels file for a flat image folder")
    parser.add_argument("--weights", default="official",
                        help="'official' (published file, hash-checked), a PATH, a URL, or 'random' (explicit seeded "
                        "random init)")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--workers", type=int, default=None, help="decode workers (default: CPU cores, max 8)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--limit", type=int, default=None, help="a deterministic class-balanced subset of N images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, metavar="FILE.json",
                        help="write the full record (protocol, per-image predictions) as JSON")
    parser.add_argument("--format", default="markdown", choices=FORMATS, help="what is printed on stdout")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--list-models", nargs="?", const="*", default=None, metavar="PATTERN",
                        help="list registered models (fnmatch pattern) and exit")
    parser.add_argument("--list-transforms", nargs="?", const="*", default=None, metavar="PATTERN",
                        help="list registered transforms (fnmatch pattern) and exit")
    return parser


def _print_models(pattern: str) -> None:
    for name in list_models(pattern):
        info = model_info(name)
        ref = f"{info.ref_top1_err:.2f}/{info.ref_top5_err:.2f}" if info.ref_top1_err is not None else "-"
        weights = f"official weights {info.hash_prefix}" if info.has_weights else "no published weights"
        params = f"{info.num_params / 1e6:.1f}M params" if info.num_params else ""
        print(f"{name:24s} {weights:34s} ref err {ref:12s} {params}")


def _print_transforms(pattern: str) -> None:
    for name in list_transforms(pattern):
        example = name.replace("{k}", "50").replace("{factor}", "1.5")
        shift = create_transform(example)
        table1 = "  [Table 1]" if example in TABLE1 else ""
        print(f"{name:16s} e.g. {example:10s} {shift.label:10s} {shift.describe()}{table1}")
    missing = [n for n in TABLE1 if n not in TRANSFORMS]
    if missing and pattern == "*":
        print(f"# not available in this installation: {', '.join(missing)} (part of 'all')")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_models is not None:
        _print_models(args.list_models)
        return 0
    if args.list_transforms is not None:
        _print_transforms(args.list_transforms)
        return 0
    if not args.model:
        parser.error("--model is required (see --list-models)")
    data = args.data or os.environ.get(DATA_ENV)
    if not data:
        parser.error(f"--data is required (or set ${DATA_ENV}) and must point at an ImageNet val folder")
    try:
        result = evaluate(
            args.model, data, args.transforms, weights=args.weights, model_kwargs=args.model_kwargs,
            labels_file=args.labels, limit=args.limit, batch_size=args.batch_size, workers=args.workers,
            device=args.device, precision=args.precision, seed=args.seed, progress=not args.no_progress,
        )
        if args.output:
            result.save(args.output)
    except (DataError, WeightsError, TransformError, KeyError, ValueError, RuntimeError, OSError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"robust-eval: error: {message}", file=sys.stderr)
        return 2
    print(format_report([result], args.format))
    env = result.environment
    print(f"done in {env['duration_s']:.1f} s (waiting for data {env['loader_wait_s']:.1f} s, "
          f"compute {env['compute_s']:.1f} s)" + (f"; record written to {args.output}" if args.output else ""),
          file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
