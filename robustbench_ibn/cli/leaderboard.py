"""``robust-leaderboard [DIR] [--check]``: regenerate DIR/README.md from DIR's entries."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._common import HelpFormatter, run_command

__all__ = ["build_parser", "main"]

PROG = "robust-leaderboard"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=HelpFormatter,
        description="Regenerate the leaderboard page (DIR/README.md) from the JSON entries in DIR/measured and "
        "DIR/reported, plus the published numbers that ship with the package (the IBN-Net paper's tables, torchvision "
        "ResNet-50 on the natural-shift datasets): grouped by protocol, ranked by mean top-1 drop. Never edit the page "
        "by hand.",
    )
    parser.add_argument("directory", nargs="?", default="leaderboards", metavar="DIR",
                        help="leaderboard folder (default: leaderboards)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the page is out of date with the entries")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        from ..leaderboard import write_leaderboard

        path, changed = write_leaderboard(args.directory, check=args.check)
        if args.check:
            print(f"{path} is {'OUT OF DATE: run robust-leaderboard ' + args.directory if changed else 'up to date'}",
                  file=sys.stderr)
            return 1 if changed else 0
        print(f"{path} {'regenerated' if changed else 'already up to date'}", file=sys.stderr)
        return 0

    return run_command(PROG, body)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
