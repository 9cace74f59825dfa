"""``robust-cache [--dir ROOT] {info,verify,clear}``: inspect the stylized-crop cache (:mod:`robustbench_ibn.stylecache`)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..files import CACHE_ENV
from ._common import HelpFormatter, run_command

__all__ = ["build_parser", "main"]

PROG = "robust-cache"
_ROLES = ("generator", "encoder", "decoder")  # the order info lists a namespace's weights hashes in


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{n} B"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, formatter_class=HelpFormatter,
                                     description="Show, verify or clear the cache of stylized "
                                     "images (the CycleGAN shifts, both variants, and AdaIN).")
    parser.add_argument("--dir", default=None, metavar="ROOT",
                        help=f"cache root (default: ${CACHE_ENV}, else ~/.cache/robustbench_ibn)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{info,verify,clear}")
    sub.add_parser("info", formatter_class=HelpFormatter,
                   help="list namespaces (shift, weights sha256, variant) with entry counts and sizes")
    verify = sub.add_parser("verify", formatter_class=HelpFormatter,
                            help="decode every entry and check its pixel hash; exit 1 if any is bad")
    verify.add_argument("--delete-bad", action="store_true", help="remove bad entries so they are regenerated")
    clear = sub.add_parser("clear", formatter_class=HelpFormatter,
                           help="delete cached crops (asks first, unless --yes)")
    clear.add_argument("prefix", nargs="?", default=None,
                       help="only namespaces starting with this, e.g. 'monet' or 'monet-3f0c' (default: all)")
    clear.add_argument("--yes", action="store_true",
                       help="delete without asking (needed when stdin is not a terminal, e.g. in scripts)")
    return parser


def _info(args: argparse.Namespace) -> int:
    from ..stylecache import cache_info, style_cache_dir

    infos = cache_info(args.dir)
    print(f"cache: {style_cache_dir(args.dir)}" + ("" if infos else " (empty)"))
    for ns in infos:
        meta = ns.meta or {}
        geoms = ", ".join(f"{g}: {c}" for g, c in ns.geometries.items()) or "-"
        link = f" -> {ns.link}" if ns.link else ""
        broken = f"; {ns.unreadable} not readable (run verify)" if ns.unreadable else ""
        print(f"{ns.name}{link}\n  {ns.entries} crops, {_size(ns.bytes)} ({geoms}){broken}")
        if meta:
            # Every network file the namespace depends on: a CycleGAN generator, or AdaIN's encoder and decoder.
            roles = sorted((k.removesuffix("_sha256") for k in meta if k.endswith("_sha256")),
                           key=lambda r: (_ROLES.index(r) if r in _ROLES else len(_ROLES), r))
            hashes = ", ".join(f"{r} sha256 {meta[r + '_sha256']}" for r in roles) or "no weights hash recorded"
            print(f"  {hashes} ({meta.get('weights_location')})")
            print(f"  variant {meta.get('variant')}: {meta.get('description', '')}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from ..stylecache import style_cache_dir, verify_cache

    good, bad = verify_cache(args.dir, delete_bad=args.delete_bad)
    for path, problem in bad:
        print(f"BAD {path}: {problem}", file=sys.stderr)
    left = [path for path, _ in bad if os.path.lexists(path)]  # a folder named x.png is reported, never deleted
    action = (f" (deleted; they will be regenerated{f', except {len(left)} left in place' if left else ''})"
              if bad and args.delete_bad else "")
    print(f"cache: {style_cache_dir(args.dir)}: {good} good, {len(bad)} bad entries{action}")
    return 1 if left else 0


def _clear(args: argparse.Namespace) -> int:
    from ..stylecache import cache_info, clear_cache, style_cache_dir

    root = style_cache_dir(args.dir)
    doomed = [ns for ns in cache_info(args.dir) if args.prefix is None or ns.name.startswith(args.prefix)]
    if doomed and not args.yes:
        what = (f"{len(doomed)} namespace(s) under {root} ({', '.join(ns.name for ns in doomed)}: "
                f"{sum(ns.entries for ns in doomed)} crops, {_size(sum(ns.bytes for ns in doomed))})")
        if not sys.stdin.isatty():
            raise ValueError(f"clear would delete {what}, and stdin is not a terminal to ask for confirmation: "
                             f"add --yes to delete without asking.")
        answer = input(f"Delete {what}? Regenerating them takes as long as the first runs did. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print(f"cache: {root}: nothing deleted")
            return 1
    removed = clear_cache(args.dir, args.prefix)
    for ns in removed:
        if ns.link:
            print(f"removed the link {ns.path} (its target {ns.link} was left as it is)")
        else:
            print(f"removed {ns.path} ({ns.entries} crops, {_size(ns.bytes)})")
    print(f"cache: {root}: cleared {len(removed)} namespace(s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = {"info": _info, "verify": _verify, "clear": _clear}[args.command]
    return run_command(PROG, lambda: command(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
