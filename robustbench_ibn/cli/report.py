"""``robust-report``: Table 1 again from stored result records; and the presentation flags robust-eval shares."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..checks import MAX_SEED
from ..options import MAX_N_BOOT, PLOT_KINDS, REPORT_FORMATS
from ..text import listing
from ._common import HelpFormatter, check_writable, int_in_range, plot_file, run_command

__all__ = ["add_report_arguments", "build_parser", "check_outputs", "main", "present"]

PROG = "robust-report"


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """The presentation flags shared by robust-eval and robust-report."""
    parser.add_argument("--format", default="markdown", choices=REPORT_FORMATS,
                        help="what is printed on stdout: markdown tables with a header, a LaTeX booktabs tabular, "
                        "long CSV or the JSON summary")
    parser.add_argument("--ci", action="store_true",
                        help="show 95%% paired-bootstrap intervals of every error and drop, flip rates and (several "
                        "models) McNemar's tests in the tables; JSON always has them")
    parser.add_argument("--n-boot", type=int_in_range(1, MAX_N_BOOT, "bootstrap resamples"), default=1000, metavar="N",
                        help=f"bootstrap resamples, at most {MAX_N_BOOT:,}")
    parser.add_argument("--ci-seed", type=int_in_range(0, MAX_SEED, "the bootstrap seed"), default=0, metavar="N",
                        help="bootstrap seed")
    parser.add_argument("--plot", type=plot_file, default=None, metavar="FILE",
                        help="draw a figure (.png, .svg or .pdf): error vs severity for sweeps "
                        "(--transforms rgb+10:100:10), else the drops per shift and model as bars (default: no plot)")
    parser.add_argument("--plot-kind", default="auto", choices=PLOT_KINDS,
                        help="auto (curves when there is a sweep, else bars), curves, bars, or field: each "
                        "natural shift's clean vs shifted accuracy among imagenet-testbed's 338 models, with the "
                        "effective-robustness fit (docs/effective-robustness.md)")
    parser.add_argument("--save-entry", nargs="?", const="leaderboards", default=None, metavar="DIR",
                        help="add each model's leaderboard entry under DIR/measured (default DIR: leaderboards); "
                        "trained weights only; regenerate the page with robust-leaderboard")


def check_outputs(args: argparse.Namespace, transforms: Sequence[str] | None, records: Sequence[str] = ()) -> None:
    """Check every output asked for before any work: the ``records`` paths (``--output``), the plot (its folder,
    matplotlib, and for ``--plot-kind curves`` a sweep among ``transforms`` when they are known) and the
    ``--save-entry`` folder. A mistake found after a long evaluation would cost a rerun."""
    from ..plots import check_plot_path
    from ..transforms import TRANSFORMS

    for record in records:
        check_writable(record, "--output")
    if args.plot:
        check_plot_path(args.plot, what="--plot")
        check_writable(args.plot, "--plot")
        families = [TRANSFORMS.template_of(n) for n in transforms or () if TRANSFORMS.family_param(n) is not None]
        if transforms is not None and args.plot_kind == "curves" and not any(families.count(f) > 1 for f in families):
            raise ValueError(f"Expected a severity sweep (two or more members of one family, e.g. --transforms "
                             f"rgb+10:100:10) to plot curves, but the shifts {', '.join(transforms[1:])} hold none. "
                             f"Use the bar chart (--plot-kind bars) instead.")
        if transforms is not None and args.plot_kind == "field":
            from ..datasets.domains import DatasetDomain
            from ..effective import has_setting

            kinds = [DatasetDomain.parse(d).kind for d in getattr(args, "domain", [])]
            if not has_setting(transforms, kinds):
                raise ValueError("Expected a domain that is an imagenet-testbed setting for --plot-kind field (a "
                                 "--domain of ImageNet-R, -A, -Sketch, -V2, ObjectNet, Stylized-ImageNet or ImageNet-C, "
                                 "or --transforms grey1), but the run has none. Add one, or use --plot-kind bars.")
    if args.save_entry:
        check_writable(Path(args.save_entry) / "measured", "--save-entry", folder=True, shown=args.save_entry)


def present(results: Sequence[Any], args: argparse.Namespace, prog: str) -> None:
    """Print the report, then write the plot and leaderboard entries asked for (notes on stderr)."""
    from ..leaderboard import save_entry
    from ..plots import plot_report
    from ..report import format_report

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
        prog=PROG, formatter_class=HelpFormatter,
        description="Table 1 (one column per model) from stored result records (robust-eval --output), with "
        "bootstrap intervals, flip rates, McNemar's tests, severity curves and plots.",
    )
    parser.add_argument("records", nargs="+", metavar="RECORD.json", help="result records written by --output")
    add_report_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``robust-report r1.json r2.json [--format latex] [--ci] [--plot FILE] [--save-entry]``."""
    args = build_parser().parse_args(argv)

    def body() -> int:
        from ..results import EvalResult

        missing = [path for path in args.records if not os.path.exists(path)]
        if missing:
            raise FileNotFoundError(
                f"Expected result records written by robust-eval --output, but {listing(missing)} "
                f"{'does' if len(missing) == 1 else 'do'} not exist (in {os.getcwd()}). Check the "
                f"path{'s' if len(missing) > 1 else ''}, or write the record first: "
                f"robust-eval --model NAME --data DIR --output {missing[0]}")
        check_outputs(args, None)
        present([EvalResult.load(path) for path in args.records], args, PROG)
        return 0

    return run_command(PROG, body)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
