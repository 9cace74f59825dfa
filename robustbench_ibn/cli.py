"""``robust-eval``: flags -> library calls. Results on stdout, progress and errors on stderr."""

from __future__ import annotations

import argparse
import ast
import os
import sys
from collections.abc import Sequence
from typing import Any

import torch

from .data import DataError
from .distributed import is_main
from .models import MODELS, list_models, model_info
from .hub import WeightsError
from .models.adapters import describe_adapters
from .plugins import PluginError, load_entry_points, load_plugins
from .leaderboard import LeaderboardError, save_entry, write_leaderboard
from .plots import PLOT_KINDS, plot_report
from .report import FORMATS, format_report
from .results import EvalResult
from .runner import BAD_IMAGE_POLICIES, evaluate
from .transforms import TABLE1, TRANSFORMS, TransformError, create_transform, list_transforms, transform_spec

__all__ = ["build_parser", "build_report_parser", "leaderboard_main", "main", "report_main"]

DATA_ENV = "ROBUSTBENCH_IBN_DATA"


def parse_kwargs(text: str) -> dict[str, Any]:
    """``in_ratio=0.25,layers=(1,2)`` -> dict; values through ``ast.literal_eval``, bare words as strings."""
    out: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in _split_top_level(text))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise argparse.ArgumentTypeError(f"Expected key=value pairs separated by commas, but got {item!r}.")
        if key in out:
            raise argparse.ArgumentTypeError(f"Expected each key once, but {key!r} is given twice in {text!r}.")
        try:
            out[key] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):  # not a Python literal: a bare word is a string (name=x)
            out[key] = value.strip()
        except (TypeError, MemoryError, RecursionError) as err:  # a literal that cannot be built: {[1]: 2}
            raise argparse.ArgumentTypeError(
                f"Expected the value of {key!r} to be a Python literal (number, string, tuple, list, dict, True, "
                f"False, None) or a bare word, but {value.strip()[:80]!r} cannot be built: {type(err).__name__}: "
                f"{str(err)[:80]}."
            ) from None
    return out


def _int_at_least(minimum: int, meaning: str) -> Any:
    """An argparse type: an integer >= ``minimum``; the message says what is accepted and what it means."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"Expected an integer >= {minimum} ({meaning}), but got {text!r}.")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def _device(text: str) -> str:
    """An argparse type: ``auto`` or a torch device string (checked for syntax; availability at run time)."""
    if text != "auto":
        try:
            torch.device(text)
        except RuntimeError:
            raise argparse.ArgumentTypeError(
                f"Expected auto, cpu, cuda or cuda:N (or another torch device type such as mps), but got {text!r}."
            ) from None
    return text


def _split_top_level(text: str) -> list[str]:
    # Split on commas that are not inside brackets or quotes, so tuples and strings survive: "a=(1,2),b='x,y'".
    parts, depth, start, quote, escaped = [], 0, 0, "", False
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote and not escaped else quote
            escaped = ch == "\\" and not escaped
            continue
        if ch in "'\"":
            quote = ch
            continue
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def parse_transform_weights(text: str) -> dict[str, str]:
    """``monet=/w/style_monet.pth[,vangogh=...]`` -> {shift name: file or URL}."""
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise argparse.ArgumentTypeError(f"Expected NAME=PATH pairs (e.g. monet=style_monet.pth), but got {item!r}.")
        out[name.strip()] = path.strip()
    return out


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """The presentation flags shared by robust-eval and robust-report."""
    parser.add_argument("--format", default="markdown", choices=FORMATS, help="what is printed on stdout")
    parser.add_argument("--ci", action="store_true",
                        help="show 95%% paired-bootstrap intervals of every error and drop, flip rates and (several "
                        "models) McNemar's tests in the tables; JSON always has them")
    parser.add_argument("--n-boot", type=_int_at_least(1, "bootstrap resamples"), default=1000, metavar="N",
                        help="bootstrap resamples (default: 1000)")
    parser.add_argument("--ci-seed", type=int, default=0, help="bootstrap seed (default: 0)")
    parser.add_argument("--plot", default=None, metavar="FILE",
                        help="draw a figure (.png, .svg or .pdf): error vs severity for sweeps "
                        "(--transforms rgb+10:100:10), else the drops per shift and model as bars")
    parser.add_argument("--plot-kind", default="auto", choices=PLOT_KINDS,
                        help="auto (curves when there is a sweep, else bars), curves or bars")
    parser.add_argument("--save-entry", nargs="?", const="leaderboards", default=None, metavar="DIR",
                        help="add each model's leaderboard entry under DIR/measured (default DIR: leaderboards); "
                        "regenerate the page with robust-leaderboard")


def _present(results: Sequence[EvalResult], args: argparse.Namespace, prog: str) -> None:
    """Print the report, then write the plot and leaderboard entries asked for (notes on stderr)."""
    print(format_report(results, args.format, ci=args.ci, n_boot=args.n_boot, seed=args.ci_seed))
    if args.plot:
        path = plot_report(results, args.plot, args.plot_kind, n_boot=args.n_boot, seed=args.ci_seed)
        print(f"{prog}: plot written to {path}", file=sys.stderr)
    if args.save_entry:
        for result in results:
            path = save_entry(result, args.save_entry, n_boot=args.n_boot, seed=args.ci_seed)
            print(f"{prog}: leaderboard entry written to {path}", file=sys.stderr)
        print(f"{prog}: regenerate the page with: robust-leaderboard {args.save_entry}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robust-eval",
        description="Top-1/top-5 error of an ImageNet classifier on clean images and under appearance shifts "
        "(Table 1 of IBN-Net, ECCV 2018).",
    )
    parser.add_argument("--model", help="registered model name (see --list-models), or a comma list of names: "
                        "each is evaluated and the table gets one column per model")
    parser.add_argument("--model-kwargs", type=parse_kwargs, default={}, metavar="K=V[,K=V]",
                        help="architecture arguments, e.g. in_ratio=0.25")
    parser.add_argument("--transforms", default="all",
                        help="'all' (Table 1: " + ", ".join(TABLE1) + ") or a comma list of names and family "
                        "members (rgb+50,r+80,std2), or a severity range: the family's number as START:STOP:STEP, STOP included "
                        "(rgb+10:100:10, std1.2:2.0:0.2); 'clean' is always evaluated (default: all)")
    parser.add_argument("--data", default=None,
                        help=f"ImageNet val folder (default: ${DATA_ENV}); class sub-folders or flat + labels file")
    parser.add_argument("--labels", default=None, help="labels file for a flat image folder")
    parser.add_argument("--weights", default="official",
                        help="'official' (published file, hash-checked), a PATH, a URL, or 'random' (explicit seeded "
                        "random init)")
    parser.add_argument("--transform-weights", type=parse_transform_weights, action="append", default=[],
                        metavar="NAME=PATH", help="weights file (or URL) of a shift that needs one, e.g. "
                        "monet=style_monet.pth; repeatable or comma-separated (default: the official file, from the "
                        "torch hub cache or downloaded)")
    parser.add_argument("--batch-size", type=_int_at_least(1, "images per batch"), default=50)
    parser.add_argument("--workers", type=_int_at_least(0, "decode processes; 0 decodes in the main process"),
                        default=None, help="decode workers (default: CPU cores, max 8)")
    parser.add_argument("--device", type=_device, default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--limit", type=_int_at_least(1, "a class-balanced subset of N images; omit it for all"),
                        default=None, help="a deterministic class-balanced subset of N images")
    parser.add_argument("--on-bad-image", default="error", choices=BAD_IMAGE_POLICIES,
                        help="an image that cannot be decoded: 'error' (default) carries on, then stops naming every "
                        "such file; 'skip' leaves them out and the result records which")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, metavar="FILE.json",
                        help="write the full record (protocol, per-image predictions) as JSON; with several models "
                        "FILE must contain {model}, e.g. runs/{model}.json")
    add_report_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--state-dir", default=None,
                        help="where finished batches are kept so an interrupted run resumes "
                        "(default: $ROBUSTBENCH_IBN_CACHE/runs or ~/.cache/robustbench_ibn/runs)")
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE.py|MODULE",
                        help="load custom shifts or models from a Python file or module (repeatable); installed "
                        "packages' robustbench_ibn.transforms/models entry points load automatically")
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
        origin = MODELS.meta(name).get("origin", "")
        plugin = f"  [{origin}]" if origin and not origin.startswith("robustbench_ibn") else ""
        variant = "  [paper variant, Table 3]" if "paper-variant" in info.tags else ""
        print(f"{name:24s} {weights:34s} ref err {ref:12s} {params}{variant}{plugin}")
    if pattern == "*":
        print(f"# also: {describe_adapters()}")


def _print_transforms(pattern: str) -> None:
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
    missing = [n for n in TABLE1 if n not in TRANSFORMS]
    if missing and pattern == "*":
        print(f"# not available in this installation: {', '.join(missing)} (part of 'all')")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:  # plug-ins first: they may add models and shifts to list or run
        load_entry_points()
        load_plugins(args.plugin)
    except PluginError as err:
        print(f"robust-eval: error: {err}", file=sys.stderr)
        return 2
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
    models = [m.strip() for m in args.model.split(",") if m.strip()]
    if len(models) > 1 and args.output and "{model}" not in args.output:
        parser.error(f"--output needs a {{model}} placeholder with several models (e.g. runs/{{model}}.json), "
                     f"but got {args.output!r}")
    results: list[EvalResult] = []
    output = args.output
    try:
        for name in models:  # every name is checked before the first evaluation starts
            model_info(name)
        for name in models:
            result = evaluate(
                name, data, args.transforms, weights=args.weights, model_kwargs=args.model_kwargs,
                labels_file=args.labels, limit=args.limit, batch_size=args.batch_size, workers=args.workers,
                device=args.device, precision=args.precision, seed=args.seed, progress=not args.no_progress,
                state_dir=args.state_dir,
                transform_weights={k: v for pairs in args.transform_weights for k, v in pairs.items()},
                on_bad_image=args.on_bad_image, output=output.replace("{model}", name) if output else None,
            )
            if not is_main():  # under torchrun every rank holds the result; rank 0 alone reports it
                continue
            if output:  # written by evaluate() before it removed the run state
                print(f"robust-eval: record written to {output.replace('{model}', name)}", file=sys.stderr)
            env = result.environment
            print(f"{name}: done in {env['duration_s']:.1f} s (waiting for data {env['loader_wait_s']:.1f} s, "
                  f"compute {env['compute_s']:.1f} s)", file=sys.stderr)
            results.append(result)
        if not is_main():
            return 0
        _present(results, args, "robust-eval")
    except (DataError, WeightsError, TransformError, LeaderboardError, KeyError, ValueError, RuntimeError,
            OSError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"robust-eval: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # evaluate() says how many images are saved and where (runner.Interrupted)
        message = str(err) or ("interrupted; the batches finished so far are kept in the run state (--state-dir); "
                               "run the same command again to resume.")
        print(f"robust-eval: {message}", file=sys.stderr)
        return 130
    return 0


def build_report_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robust-report",
        description="Table 1 (one column per model) from stored result records (robust-eval --output), with "
        "bootstrap intervals, flip rates, McNemar's tests, severity curves and plots.",
    )
    parser.add_argument("records", nargs="+", metavar="RECORD.json", help="result records written by --output")
    add_report_arguments(parser)
    return parser


def report_main(argv: Sequence[str] | None = None) -> int:
    """``robust-report r1.json r2.json [--format latex] [--ci] [--plot FILE] [--save-entry]``."""
    args = build_report_parser().parse_args(argv)
    try:
        results = [EvalResult.load(path) for path in args.records]
        _present(results, args, "robust-report")
    except (LeaderboardError, KeyError, ValueError, RuntimeError, OSError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"robust-report: error: {message}", file=sys.stderr)
        return 2
    return 0


def leaderboard_main(argv: Sequence[str] | None = None) -> int:
    """``robust-leaderboard [DIR] [--check]``: regenerate DIR/README.md from DIR's entries."""
    parser = argparse.ArgumentParser(
        prog="robust-leaderboard",
        description="Regenerate the leaderboard page (DIR/README.md) from the JSON entries in DIR/measured and "
        "DIR/reported: grouped by protocol, ranked by mean top-1 drop. Never edit the page by hand.",
    )
    parser.add_argument("directory", nargs="?", default="leaderboards", metavar="DIR",
                        help="leaderboard folder (default: leaderboards)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the page is out of date with the entries")
    args = parser.parse_args(argv)
    try:
        path, changed = write_leaderboard(args.directory, check=args.check)
    except (LeaderboardError, OSError) as err:
        print(f"robust-leaderboard: error: {err}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{path} is {'OUT OF DATE: run robust-leaderboard ' + args.directory if changed else 'up to date'}",
              file=sys.stderr)
        return 1 if changed else 0
    print(f"{path} {'regenerated' if changed else 'already up to date'}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
