"""docs/styles.md cannot drift: its console commands run offline and print what the page shows; its pycon
examples pass."""

from __future__ import annotations

import doctest
import re
import shlex
from pathlib import Path

import pytest

from conftest import SHARED_DATA
from robustbench_ibn.cli.cache import main as robust_cache
from robustbench_ibn.cli.divergence import main as robust_divergence
from robustbench_ibn.cli.eval import main as robust_eval

PAGE = Path(__file__).resolve().parents[1] / "docs" / "styles.md"
COMMANDS = {"robust-eval": robust_eval, "robust-cache": robust_cache, "robust-divergence": robust_divergence}


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", PAGE.read_text(encoding="utf-8"), flags=re.S | re.M)


def console_commands() -> list[tuple[str, list[str]]]:
    """Every ``$ command`` of the page's console blocks with the output lines shown under it (maybe none)."""
    commands: list[tuple[str, list[str]]] = []
    for block in blocks("console"):
        for line in block.splitlines():
            if line.startswith("$ "):
                commands.append((line[2:], []))
            else:
                commands[-1][1].append(line)
    return commands


@pytest.mark.slow  # the page's AdaIN run: ResNet-50 and AdaIN at 224x224 on the CPU
def test_console_examples_run_and_print_what_the_page_shows(tmp_path, monkeypatch, capsys):
    from test_adain import save_weights  # random weights in the pytorch-AdaIN layouts

    project = tmp_path / "project"  # the page's commands run from the project root, beside ../shared
    project.mkdir()
    (tmp_path / "shared").symlink_to(SHARED_DATA.parent)
    save_weights(project / "adain-weights")
    monkeypatch.chdir(project)
    commands = console_commands()
    assert len(commands) >= 4
    printed = {}
    for command, expected in commands:
        prog, *argv = shlex.split(command)
        code = COMMANDS[prog](argv)
        out, err = capsys.readouterr()
        assert code == 0, f"{command}\n{err}"
        if expected:
            assert out.splitlines() == expected, f"docs/styles.md shows another output for: {command}"
        printed[prog, argv[0]] = out
    table = printed["robust-eval", "--model"]
    assert "| AdaIN α=1 " in table and "| AdaIN α=0.5 " in table and "RANDOM INIT" in table
    info = printed["robust-cache", "info"]
    assert "adain1-" in info and "adain0.5-" in info and "encoder sha256" in info and "decoder sha256" in info


def test_python_examples_pass():
    text = "\n".join(blocks("pycon"))
    test = doctest.DocTestParser().get_doctest(text, {}, "docs/styles.md", str(PAGE), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.tries >= 4 and runner.failures == 0
