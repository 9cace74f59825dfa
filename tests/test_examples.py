"""The README's and the docs' examples, run as a new user would run them (issue 17).

Every shell and Python block of a page runs, in page order, in a fresh folder beside ``../shared`` (so the pages'
relative paths such as ``../shared/data/imagenet-sample/val`` and ``examples/my_shifts.py`` hold), with the
environment activated (``.venv/bin`` first on PATH), an empty torch hub cache and an empty run cache:

* ```` ```bash ```` blocks run as one bash script that must succeed;
* ```` ```text ```` blocks that start with ``$ `` are transcripts: each command runs and its stdout must equal the
  lines shown (trailing spaces aside; a line starting with ``...`` stands for any number of lines);
* ```` ```python ```` blocks run as a script, or, with ``>>>`` prompts, as a doctest (outputs compared, ``...``
  elides).

A block that cannot run offline (real ImageNet paths, downloads, GPUs) starts with the visible line
``# not run by the tests: <why>``; :data:`NOT_RUN` lists every such block, so the list stays short and known. The
README's set-up block is not run either (it would install and run this suite): it must be exactly what ``.ci/run``
runs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import QUICK_START

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))]
NOT_RUN_MARK = "# not run by the tests:"
SETUP = ["python3 -m venv .venv && .venv/bin/pip install -e '.[test]'", ".venv/bin/python -m pytest -q"]
# (page, the block's first command): every block marked as not run, and why it cannot run here.
NOT_RUN = {
    ("README.md", "python3 -m venv .venv && .venv/bin/pip install torch torchvision --index-url "
                  "https://download.pytorch.org/whl/cpu"): "the network",
    ("README.md", "robust-eval --model resnet50_ibn_b --transforms all --data /path/to/imagenet/val"):
        "ImageNet val, official weights",
    ("docs/models.md", "robust-eval --model tv:efficientnet_b0 --transforms rgb+50,r+50,std1.5 --data /path/to/val"):
        "ImageNet val, downloads",
    ("docs/models.md", "robust-eval --model resnet50_ibn_a --model-kwargs in_groups=1-2,in_ratio=0.25 --weights "
                       "my_ablation.pth --transforms rgb+50,r+50,std1.5 --data /path/to/imagenet/val"):
        "ImageNet val, a trained ablation checkpoint",
    ("docs/running.md", "torchrun --standalone --nproc_per_node=8 -m robustbench_ibn --model resnet50_ibn_b "
                        "--transforms all --data /path/to/imagenet/val --output runs/ibn_b.json"):
        "GPUs, ImageNet val (tests/test_scale.py runs 2 CPU ranks)",
    ("docs/divergence.md", "robust-divergence --model resnet50,resnet50_ibn_a,resnet50_ibn_b --domains clean,monet "
                           "--data /path/to/imagenet/val --plot runs/fig5b.png"):
        "ImageNet val, official weights, the Monet generator",
    ("docs/styles.md", "from robustbench_ibn.transforms.cyclegan import stylize_folder"):
        "ImageNet val, the official Monet generator",
    ("docs/styles.md", "from robustbench_ibn import evaluate"): "ImageNet val, the official Monet and AdaIN files",
    ("docs/natural-shifts.md", "robust-eval --model resnet50_ibn_b --transforms all --data /data/imagenet/val "
                               "--domain imagenet-r=/data/imagenet-r --domain imagenet-c=/data/imagenet-c"):
        "ImageNet val, the natural-shift datasets, official weights",
    ("docs/natural-shifts.md", "from robustbench_ibn import evaluate"):
        "ImageNet val, the natural-shift datasets, official weights",
    ("docs/effective-robustness.md", "robust-eval --model resnet50_ibn_b --transforms grey1 --data /data/imagenet/val "
                                     "--domain imagenet-r=/data/imagenet-r --ci --output runs/ibn_b.json --plot "
                                     "runs/field.png --plot-kind field"): "ImageNet val and ImageNet-R, official weights",
    ("docs/effective-robustness.md", "from robustbench_ibn import EvalResult"):
        "a minute of CPU; it rewrites the figure in docs/",
    ("docs/imagenet-c.md", "robust-eval --model efficientnet_lite0 --transforms imagenet-c --data "
                           "../shared/data/imagenet-sample/val --limit 50"): "minutes of CPU (75 sets x 50 images)",
    ("docs/performance.md", ".venv/bin/python bench/bench_eval.py"): "minutes per bench",
    ("docs/performance.md", ".venv/bin/python bench/bench_fast.py --repeats 2 --rounds 4"): "minutes per bench",
}
# Blocks a session fixture runs instead, once for the whole suite (the same command, the same output compared).
# (page, how the block starts): the test that compares its output.
RUN_ELSEWHERE = {("README.md", QUICK_START): "tests/test_lite.py::test_the_readme_quick_start_prints_what_it_shows"}
BLOCK = re.compile(r"^```(?P<lang>[\w+-]*)[ \t]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)


@dataclass
class Block:
    page: str
    line: int
    lang: str
    body: str

    @property
    def commands(self) -> list[str]:
        """Shell commands, continuation lines joined, comments dropped."""
        text = re.sub(r"\\\n\s*", "", self.body)
        lines = [re.sub(r"\s+#.*$", "", line).strip() for line in text.splitlines()]
        return [line for line in lines if line and not line.startswith("#")]

    def where(self) -> str:
        return f"{self.page}, line {self.line} ({self.lang} block)"


def page_blocks(page: str) -> list[Block]:
    text = (ROOT / page).read_text(encoding="utf-8")
    return [Block(page, text[:m.start()].count("\n") + 1, m["lang"], m["body"]) for m in BLOCK.finditer(text)]


def runnable(block: Block) -> bool:
    if block.lang in ("bash", "sh", "python"):
        return not block.body.startswith(NOT_RUN_MARK) and block.commands != SETUP
    if any(block.page == page and block.body.startswith(start) for page, start in RUN_ELSEWHERE):
        return False
    return block.lang == "text" and block.body.startswith("$ ")


def first_command(block: Block) -> str:
    return block.commands[0].removeprefix("$ ")


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A user's folder: the project's examples and a copy of its leaderboards, ``../shared`` beside it."""
    (tmp_path / "shared").symlink_to(ROOT.parent / "shared")
    home = tmp_path / "project"
    home.mkdir()
    (home / ".venv").symlink_to(Path(sys.prefix))
    (home / "examples").symlink_to(ROOT / "examples")
    shutil.copytree(ROOT / "leaderboards", home / "leaderboards")
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("VIRTUAL_ENV", sys.prefix)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no cached weights: nothing official is found
    monkeypatch.setenv("PYTHONPATH", str(home))  # plug-ins by module name, as from the current directory
    monkeypatch.setenv("COLUMNS", "200")
    return home


def run(command: list[str], cwd: Path, block: Block, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (f"{block.where()}: {' '.join(command)[:300]} failed (exit {done.returncode}):\n"
                                  f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def matches(expected: list[str], actual: list[str]) -> bool:
    """Line by line; an expected line starting with ``...`` matches any number of actual lines."""
    if not expected:
        return not actual
    if expected[0].lstrip().startswith("..."):
        return any(matches(expected[1:], actual[i:]) for i in range(len(actual) + 1))
    return bool(actual) and expected[0] == actual[0] and matches(expected[1:], actual[1:])


def run_transcript(block: Block, cwd: Path) -> None:
    steps: list[tuple[str, list[str]]] = []
    lines = block.body.splitlines()
    i = 0
    while i < len(lines):
        command = lines[i][2:]
        while command.endswith("\\"):
            i += 1
            command = command[:-1] + " " + lines[i].strip()
        i += 1
        output = []
        while i < len(lines) and not lines[i].startswith("$ "):
            output.append(lines[i].rstrip())
            i += 1
        steps.append((command, output))
    for command, expected in steps:
        done = run(["bash", "-c", command], cwd, block)
        actual = [line.rstrip() for line in done.stdout.rstrip("\n").splitlines()]
        while expected and not expected[-1]:
            expected.pop()
        assert matches(expected, actual), (f"{block.where()}: `{command[:120]}` printed\n" + "\n".join(actual) +
                                           "\n\ninstead of\n" + "\n".join(expected))


DOCTEST = """
import doctest, sys
text = open(sys.argv[1], encoding="utf-8").read()
test = doctest.DocTestParser().get_doctest(text, {}, sys.argv[2], sys.argv[2], 0)
runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
runner.run(test)
sys.exit(1 if runner.failures else 0)
"""


def run_python(block: Block, cwd: Path, index: int) -> None:
    script = cwd / f"example_{index}.py"
    script.write_text(block.body, encoding="utf-8")
    if ">>> " in block.body:
        run([sys.executable, "-c", DOCTEST, str(script), block.where()], cwd, block)
    else:
        run([sys.executable, str(script)], cwd, block)


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run(page, project):
    ran = 0
    for index, block in enumerate(page_blocks(page)):
        if not runnable(block):
            continue
        if block.lang == "text":
            run_transcript(block, project)
        elif block.lang == "python":
            run_python(block, project, index)
        else:
            run(["bash", "-e", "-c", block.body], project, block)
        ran += 1
    # docs/styles.md's console and pycon examples run in tests/test_styles_doc.py (with AdaIN files it makes).
    assert ran or page in ("docs/layout.md", "docs/performance.md", "docs/styles.md", "docs/troubleshooting.md"), \
        f"{page} has no example that runs"


def test_blocks_not_run_are_marked_and_listed():
    marked = {(b.page, first_command(b)) for page in PAGES for b in page_blocks(page)
              if b.lang in ("bash", "sh", "python") and b.body.startswith(NOT_RUN_MARK)}
    assert marked == set(NOT_RUN), f"marked but not listed: {marked - set(NOT_RUN)}; listed but not marked: " \
                                   f"{set(NOT_RUN) - marked}"


def test_readme_setup_is_what_ci_runs():
    readme = page_blocks("README.md")
    assert readme[0].lang == "bash" and readme[0].commands == SETUP  # the README's first block
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert all(command in ci for command in SETUP)


def test_examples_never_write_into_the_project():
    """Every file an example writes goes to runs/ (git-ignored) or a folder the user names, never the project's
    leaderboard or docs: no --output, --plot or --save-entry outside runs/ in any runnable block."""
    writes = re.compile(r"(--output|--plot|--save-entry)[ =](?P<path>\S+)")
    bad = [(b.where(), m["path"]) for page in PAGES for b in page_blocks(page) if runnable(b)
           for m in writes.finditer(b.body) if not m["path"].startswith("runs/")]
    assert not bad
    assert "/runs/" in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()


def test_every_docs_page_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [p for p in PAGES[1:] if f"]({p})" not in readme]
    assert not missing
    for page in PAGES:  # and every relative link of every page leads to a file
        text = (ROOT / page).read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)", text):
            assert (ROOT / page).parent.joinpath(target).exists(), f"{page}: broken link {target}"
