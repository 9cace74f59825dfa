"""Every console script's --help: instant (no torch), every flag explained with its default, the same flag names,
metavars and choices where two scripts mean the same, and the README's synopsis listing every robust-eval flag."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from robustbench_ibn.cli import cache, divergence, leaderboard, report
from robustbench_ibn.cli import eval as eval_cli

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {"robust-eval": eval_cli, "robust-report": report, "robust-leaderboard": leaderboard,
           "robust-cache": cache, "robust-divergence": divergence}
HEAVY = ("torch", "torchvision", "kornia", "pandas", "numpy", "PIL", "matplotlib")


def test_help_imports_no_torch():
    """--help of every script (and a bare ``import robustbench_ibn``) imports none of the heavy libraries: it
    answers in a fraction of a second instead of the seconds torch and torchvision take to import."""
    code = f"""
import contextlib, io, json, sys
import robustbench_ibn
from robustbench_ibn.cli import cache, divergence, eval, leaderboard, report
for main, argv in [(eval.main, ["--help"]), (report.main, ["--help"]), (leaderboard.main, ["--help"]),
                   (cache.main, ["--help"]), (cache.main, ["clear", "--help"]), (divergence.main, ["--help"])]:
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            main(argv)
        except SystemExit as exit:
            assert exit.code == 0, (argv, exit.code)
print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_the_public_names_are_imported_on_first_use():
    import robustbench_ibn as rb

    assert set(rb.__all__) <= set(dir(rb))
    assert rb.evaluate.__module__ == "robustbench_ibn.runner" and rb.Shift.__name__ == "Shift"
    with pytest.raises(AttributeError, match="has no attribute 'evaluat'"):
        rb.evaluat  # noqa: B018


def _parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    out = []
    for name, module in SCRIPTS.items():
        parser = module.build_parser()
        out.append((name, parser))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                out += [(f"{name} {sub}", p) for sub, p in action.choices.items()]
    return out


@pytest.mark.parametrize("name,parser", _parsers(), ids=[n for n, _ in _parsers()])
def test_every_flag_has_help_and_shows_its_default(name, parser):
    formatter = parser._get_formatter()
    one_of = {a for g in parser._mutually_exclusive_groups if g.required for a in g._group_actions}
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        flag = "/".join(action.option_strings) or action.dest
        assert action.help, f"{name} {flag} has no help text"
        shown = formatter._get_help_string(action) % {"default": action.default}
        takes_value = action.nargs != 0
        if takes_value and not action.required and action not in one_of:
            assert "default" in shown or "required" in shown, f"{name} {flag}: {shown!r} does not say its default"
    text = parser.format_help()
    for value in ("(default: 50)", "(default: fp32)", "(default: official)", "(default: auto)", "(default: 0)"):
        if name in ("robust-eval",):
            assert value in re.sub(r"\s+", " ", text), value


def _option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action | None:
    return next((a for a in parser._actions if flag in a.option_strings), None)


def test_scripts_agree_where_they_mean_the_same():
    parsers = {name: module.build_parser() for name, module in SCRIPTS.items()}
    shared = ["--model", "--model-kwargs", "--weights", "--seed", "--data", "--labels", "--transform-weights",
              "--workers", "--device", "--on-bad-image", "--format", "--plot", "--plugin", "--limit", "--output",
              "--no-progress", "--batch-size"]
    for flag in shared:
        actions = {name: a for name, p in parsers.items() if (a := _option(p, flag)) is not None}
        assert len(actions) >= 2, flag
        for attribute in ("metavar", "choices", "type", "nargs", "required", "action"):
            values = {name: str(getattr(a, attribute, None) if attribute != "action" else type(a).__name__)
                      for name, a in actions.items()}
            if attribute == "type":  # argparse types are closures: compare what they are called
                values = {n: getattr(a.type, "__name__", str(a.type)) for n, a in actions.items()}
            assert len(set(values.values())) == 1, f"{flag} {attribute}: {values}"
    assert _option(parsers["robust-divergence"], "--format").choices == ("markdown", "latex", "csv", "json")
    for name in ("robust-eval", "robust-divergence"):  # the working form of the usage line needs --model
        assert parsers[name].format_usage().startswith(f"usage: {name} --model NAME[,NAME...] ")


def test_readme_synopsis_lists_every_flag_of_every_script():
    """The synopsis block of the README's "Command line" section: each script's lines (its name, then indented
    continuation lines) name every flag the script takes."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    synopsis = readme.split("## Command line", 1)[1].split("```text\n", 1)[1].split("\n```", 1)[0]
    blocks: dict[str, str] = {}
    current = None
    for line in synopsis.splitlines():
        script = line.split()[0] if line[:1].strip() else None  # None: a continuation line
        current = script if script in SCRIPTS else current if script is None else None
        if current:
            blocks[current] = blocks.get(current, "") + line + "\n"
    assert set(blocks) == set(SCRIPTS)
    missing = [f"{name} {flag}" for name, parser in _parsers() for action in parser._actions
               for flag in action.option_strings if flag not in ("-h", "--help")
               and not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", blocks[name.split()[0]])]
    assert not missing, f"README's command-line synopsis lacks {missing}"
